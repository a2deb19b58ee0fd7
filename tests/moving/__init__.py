"""Tests of celerybeatredis/moving/: migration from the old celerybeat-redis and RedBeat."""
