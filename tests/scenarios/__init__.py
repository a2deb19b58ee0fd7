"""End-to-end runs of real celery beat and worker processes, brokers, clusters and faults."""
