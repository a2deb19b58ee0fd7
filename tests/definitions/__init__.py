"""Tests of celerybeatredis/definitions/: the JSON document, schedule kinds, members and calendars."""
