"""Tests of celerybeatredis/policies/: catch-up, jitter and overlap."""
