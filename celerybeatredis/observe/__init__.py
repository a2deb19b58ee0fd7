"""What beat tells about itself: its logger, counters, heartbeat, status, /healthz and /metrics."""
