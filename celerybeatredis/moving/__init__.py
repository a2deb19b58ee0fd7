"""Moving schedules: export and import, migration from the old celerybeat-redis and RedBeat, resharding."""
