"""Settings: every variable validated at start, with a message naming it."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from proxy import settings as s
from proxy.devtools import ROOT, free_port


def test_defaults_match_the_reference():
    cfg = s.load({})
    assert cfg.backend_url == "https://llm.chutes.ai/v1/chat/completions"
    assert (cfg.host_port, cfg.port, cfg.bind_port) == (8282, None, 8282)
    assert cfg.backend_timeout_secs == 600
    assert cfg.max_body_bytes == 10 * 1024 * 1024 and cfg.max_event_bytes == 1024 * 1024
    assert cfg.breaker_enabled and cfg.breaker_threshold == 5 and cfg.breaker_recovery_secs == 30


@pytest.mark.parametrize(
    "url, expected",
    [
        ("http://h:8000/v1", "http://h:8000/v1/chat/completions"),
        ("http://h:8000/v1/", "http://h:8000/v1/chat/completions"),
        ("https://api.x/v1/chat/completions", "https://api.x/v1/chat/completions"),
    ],
)
def test_backend_url_accepts_a_base_or_the_full_endpoint(url, expected):
    assert s.load({"BACKEND_URL": url}).backend_url == expected


@pytest.mark.parametrize(
    "env, name",
    [
        ({"HOST_PORT": "eighty"}, "HOST_PORT"),
        ({"HOST_PORT": "70000"}, "HOST_PORT"),
        ({"PORT": "-1"}, "PORT"),
        ({"BACKEND_TIMEOUT_SECS": "soon"}, "BACKEND_TIMEOUT_SECS"),
        ({"BACKEND_URL": "ftp://x"}, "BACKEND_URL"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"MAX_BODY_BYTES": "10MB"}, "MAX_BODY_BYTES"),
        ({"MAX_BODY_BYTES": "12"}, "MAX_BODY_BYTES"),
        ({"MAX_UPSTREAM_EVENT_BYTES": "0"}, "MAX_UPSTREAM_EVENT_BYTES"),
        ({"CIRCUIT_BREAKER_ENABLED": "maybe"}, "CIRCUIT_BREAKER_ENABLED"),
        ({"CIRCUIT_BREAKER_THRESHOLD": "0"}, "CIRCUIT_BREAKER_THRESHOLD"),
        ({"BUILTIN_TOOLS": "ignore"}, "BUILTIN_TOOLS"),
        ({"FORWARD_HEADERS": "Authorization"}, "FORWARD_HEADERS"),
        ({"FORWARD_HEADERS": "Connection"}, "FORWARD_HEADERS"),
        ({"BACKEND_API_KEY": "sk-operator"}, "PROXY_API_KEYS"),
    ],
)
def test_bad_values_name_the_variable(env, name):
    with pytest.raises(s.SettingsError, match=name):
        s.load(env)


def test_port_wins_over_host_port():
    assert s.load({"PORT": "9000", "HOST_PORT": "8282"}).bind_port == 9000


def test_gunicorn_refuses_to_start_on_a_bad_setting():
    """The master validates before forking: a clear one-line message and exit 2."""
    env = dict(os.environ, HOST_PORT=str(free_port()), BACKEND_TIMEOUT_SECS="forever")
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    done = subprocess.run(
        [gunicorn, "-c", "conf/gunicorn.conf.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "invalid setting: BACKEND_TIMEOUT_SECS must be a number of seconds, got 'forever'" in done.stderr


def test_the_response_store_defaults_to_a_sqlite_file_in_the_working_directory():
    cfg = s.load({})
    assert cfg.response_store_url == "sqlite:///" + os.path.join(os.getcwd(), "responses-proxy.sqlite3")
    assert cfg.response_store_ttl_secs == 30 * 24 * 3600
    assert cfg.response_store_max_object_bytes == 16 * 1024 * 1024
    assert cfg.response_store_timeout_secs == 3.0 and cfg.response_store_owner_secret is None


@pytest.mark.parametrize(
    "raw, expected",
    [
        # "sqlite:///" + the absolute path; three slashes name the same absolute file (never a relative one)
        ("sqlite:////{tmp}/x.db", "sqlite:////{tmp}/x.db"),
        ("sqlite:///{tmp}/x.db", "sqlite:////{tmp}/x.db"),
        ("none", "none"),
        ("NONE", "none"),
        ("redis://cache:6379/2", "redis://cache:6379/2"),
        ("rediss://user:pw@cache.example:6380/0", "rediss://user:pw@cache.example:6380/0"),
        ("redis://cache", "redis://cache"),
        ("unix:///run/redis/redis.sock", "unix:///run/redis/redis.sock"),
    ],
)
def test_response_store_url_forms(tmp_path, raw, expected):
    tmp = str(tmp_path).lstrip("/")
    cfg = s.load({"RESPONSE_STORE_URL": raw.format(tmp=tmp)})
    assert cfg.response_store_url == expected.format(tmp=tmp)


@pytest.mark.parametrize(
    "env",
    [
        {"RESPONSE_STORE_URL": "postgres://db/x"},
        {"RESPONSE_STORE_URL": "sqlite://relative.db"},
        {"RESPONSE_STORE_URL": "sqlite:///"},
        {"RESPONSE_STORE_URL": "sqlite:///no/such/directory/x.db"},
        {"RESPONSE_STORE_URL": "redis://cache/abc"},
        {"RESPONSE_STORE_URL": "redis:///0"},
        {"RESPONSE_STORE_URL": "redis://cache:99999/0"},
        {"RESPONSE_STORE_TTL_SECS": "0"},
        {"RESPONSE_STORE_TTL_SECS": "a month"},
        {"RESPONSE_STORE_MAX_OBJECT_BYTES": "10"},
        {"RESPONSE_STORE_TIMEOUT_SECS": "forever"},
    ],
)
def test_bad_response_store_settings_name_the_variable(env):
    (name,) = env
    with pytest.raises(s.SettingsError, match=name):
        s.load(env)


def test_open_store_builds_what_the_url_names(tmp_path):
    from proxy.store import open_store
    from proxy.store.redis_store import RedisStore
    from proxy.store.sqlite_store import SQLiteStore

    assert open_store(s.load({"RESPONSE_STORE_URL": "none"})) is None
    env = {"RESPONSE_STORE_TTL_SECS": "60", "RESPONSE_STORE_OWNER_SECRET": "pepper"}
    sqlite = open_store(s.load({**env, "RESPONSE_STORE_URL": f"sqlite://{tmp_path}/x.db"}))
    assert isinstance(sqlite, SQLiteStore) and sqlite.path == f"{tmp_path}/x.db" and sqlite.ttl_secs == 60
    assert not (tmp_path / "x.db").exists()  # opened at the first operation, in a worker
    redis = open_store(s.load({**env, "RESPONSE_STORE_URL": "redis://127.0.0.1:1/3"}))
    assert isinstance(redis, RedisStore) and redis.max_object_bytes == 16 * 1024 * 1024
    assert sqlite.owner_of("sk-a") == redis.owner_of("sk-a") != open_store(s.load({})).owner_of("sk-a")
