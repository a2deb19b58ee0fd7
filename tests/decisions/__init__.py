"""Tests of celerybeatredis/decisions/: what happens to each claimed entry, and a batch's shared answers."""
