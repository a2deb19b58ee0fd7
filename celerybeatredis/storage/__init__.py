"""The schedule in Redis: keys, clients, the Lua scripts and the one place they are called, one hash tag or many."""
