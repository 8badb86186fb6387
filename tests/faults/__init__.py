"""Fault-injection tests on the real process tree (gunicorn master + 2 Uvicorn workers + mock backend)."""
