"""Tests of celerybeatredis/observe/: the heartbeat, status, /healthz and /metrics."""
