"""Tests of celerybeatredis/web/: the dashboard, in a real browser and over HTTP."""
