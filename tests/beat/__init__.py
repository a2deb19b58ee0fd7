"""Tests of celerybeatredis/beat/: a shard's batches in a tick, streaming, leases, late batches and statics."""
