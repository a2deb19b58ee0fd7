"""The parts of the Python API, :class:`celerybeatredis.store.ScheduleStore`: reads, bulk writes, calendars, checks."""
