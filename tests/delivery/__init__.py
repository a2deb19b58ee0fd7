"""Tests of celerybeatredis/delivery/: delivery modes, messages, publishing, re-sends and backfill."""
