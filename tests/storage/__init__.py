"""Tests of celerybeatredis/storage/: the keys, clients, Lua scripts and stores, against real redis-servers."""
