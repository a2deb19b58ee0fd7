"""Tests of celerybeatredis/cli/: the console script, run as a subprocess."""
