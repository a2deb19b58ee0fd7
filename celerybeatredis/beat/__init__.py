"""Beat's tick on one shard: claim, decide, commit, publish, with leases kept alive and stop signals held."""
