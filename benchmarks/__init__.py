"""Side-by-side benchmarks of celerybeat-redis, RedBeat and Celery's PersistentScheduler."""
