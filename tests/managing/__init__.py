"""Tests of celerybeatredis/managing/: the parts behind the Python API (the API itself is tested in tests/test_store.py)."""
