"""Falcon resources: the HTTP edge of the proxy."""
