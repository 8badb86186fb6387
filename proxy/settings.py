"""Settings from the environment, validated once at start.

A bad value stops the service with a message naming the variable, before any
worker forks: a typo in a unit file should fail loudly, not at the first request.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .breaker.table import MAX_SLOTS as MAX_MODEL_SLOTS

DEFAULT_BACKEND_URL = "https://llm.chutes.ai/v1/chat/completions"
MAX_BODY_BYTES = 10 * 1024 * 1024
MAX_EVENT_BYTES = 1024 * 1024
CONNECT_TIMEOUT_SECS = 10.0
STORE_FILE_NAME = "responses-proxy.sqlite3"
# After GRACEFUL_TIMEOUT_SECS, the time background jobs still running get to store their failure:
# conf/gunicorn.conf.py adds it to gunicorn's graceful timeout, so that happens before the kill.
BACKGROUND_SHUTDOWN_MARGIN_SECS = 5

_LEVELS = {
    "trace": "DEBUG",
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "critical": "CRITICAL",
    "off": "CRITICAL",
}


# Credentials, identity and hop-by-hop headers (RFC 9110 §7.6.1) never pass through.
_NEVER_FORWARDED = frozenset(
    {
        "authorization", "x-api-key", "cookie", "host", "content-length", "content-type",
        "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade",
        "x-forwarded-for", "x-real-ip", "forwarded", "accept-encoding",
    }
)


class SettingsError(ValueError):
    """A setting has a value the service cannot run with."""


@dataclass(frozen=True, slots=True)
class Settings:
    backend_url: str = DEFAULT_BACKEND_URL
    host_port: int = 8282
    port: int | None = None
    backend_timeout_secs: float = 600.0
    backend_idle_timeout_secs: float = 300.0
    keepalive_secs: float = 15.0
    log_level: str = "INFO"
    log_format: str = "text"
    web_concurrency: int = 1
    graceful_timeout_secs: float = 600.0
    breaker_enabled: bool = True
    breaker_threshold: int = 5
    breaker_recovery_secs: float = 30.0
    breaker_model_slots: int = 256
    builtin_tools: str = "drop"
    max_tokens_field: str = "max_tokens"
    forward_verbosity: bool = False
    forward_prompt_cache_key: bool = False
    forward_prompt_cache_retention: bool = False
    forward_prompt_cache_options: bool = False
    forward_service_tier: bool = False
    reasoning_in_history: bool = True
    backend_api_key: str | None = None
    proxy_api_keys: frozenset[str] = frozenset()
    forward_headers: tuple[str, ...] = ()
    json_upstream: str = "json"
    max_body_bytes: int = MAX_BODY_BYTES
    body_read_timeout_secs: float = 60.0
    max_event_bytes: int = MAX_EVENT_BYTES
    # The response store (proxy/store): "none", "sqlite:///<absolute path>" or "redis://host:port/db".
    response_store_url: str = "none"
    response_store_ttl_secs: int = 30 * 24 * 3600
    response_store_max_object_bytes: int = 16 * 1024 * 1024
    response_store_timeout_secs: float = 3.0
    response_store_owner_secret: str | None = None
    # Background mode (proxy/background): a job's lease (renewed every 0.5 s by its worker; past it
    # the job is failed by any worker), and how many jobs may run at once per worker and per key.
    background_lease_secs: float = 10.0
    background_max_per_worker: int = 64
    background_max_per_key: int = 32
    metrics_dir: str | None = None
    models_cache_secs: float = 60.0
    # WebSocket mode: a connection's lifetime (OpenAI's is 60 minutes), and the
    # interval of the server's keep-alive pings (a peer silent for as long again is dropped).
    websocket_max_secs: float = 3600.0
    websocket_ping_secs: float = 20.0
    # WebSocket lanes (``stream_id``, proxy/resources/ws_lanes.py), per connection: distinct named
    # lanes over its lifetime and responses running at once (OpenAI's 32 and 16), and creates
    # waiting to start (their frames also at most MAX_BODY_BYTES together).
    websocket_max_lanes: int = 32
    websocket_max_active: int = 16
    websocket_max_queued: int = 64
    # Stopping a worker (proxy/worker.py): how long a connection with no request in progress
    # may still bring one (answered with "Connection: close"); on SIGTERM, how long the master
    # first answers /health with 503 "draining" while serving normally (conf/gunicorn.conf.py).
    shutdown_linger_secs: float = 10.0
    shutdown_drain_secs: float = 0.0
    # What the backend is asked when a conversation is compacted (None: the built-in prompt).
    compaction_prompt: str | None = None

    @property
    def bind_port(self) -> int:
        """``$PORT`` (the Heroku convention) wins over ``HOST_PORT``."""
        return self.port if self.port is not None else self.host_port

    @property
    def backend_models_url(self) -> str:
        """``GET /models`` beside the chat endpoint: ``…/v1/chat/completions`` → ``…/v1/models``."""
        return self.backend_url[: -len("/chat/completions")] + "/models"


def backend_chat_url(url: str) -> str:
    """Accept a full ``…/chat/completions`` URL or a base such as ``http://h:8000/v1``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"BACKEND_URL must be an http(s) URL, got {url!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions"
    return parts._replace(path=path).geturl()


def store_url(raw: str) -> str:
    """``RESPONSE_STORE_URL``: ``none``; ``sqlite:///<absolute path>`` (``sqlite:////abs`` works
    too: either way the path is absolute, so every worker opens the same file whatever its
    working directory), its directory existing and writable; or ``redis[s]://host[:port][/db]``
    (``unix:///path.sock`` too). Empty: a file in the working directory."""
    name = "RESPONSE_STORE_URL"
    if not raw:
        return "sqlite:///" + os.path.join(os.getcwd(), STORE_FILE_NAME)
    if raw.lower() == "none":
        return "none"
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc or not parts.path.strip("/") or parts.query:
            raise SettingsError(f"{name} must be sqlite:///<absolute path to a file>, got {raw!r}")
        path = "/" + parts.path.lstrip("/")
        folder = os.path.dirname(path)
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise SettingsError(f"{name}: the directory {folder!r} does not exist or is not writable")
        return "sqlite:///" + path
    if scheme in ("redis", "rediss", "unix"):
        try:
            _ = parts.port  # raises on a port that is not a number in range
        except ValueError:
            raise SettingsError(f"{name} has a bad port: {raw!r}") from None
        db = parts.path.strip("/")
        if scheme != "unix" and (not parts.hostname or (db and not db.isdigit())):
            raise SettingsError(f"{name} must be redis://host[:port][/db] with a numeric db, got {raw!r}")
        if scheme == "unix" and not parts.path:
            raise SettingsError(f"{name} must be unix:///path/to/redis.sock, got {raw!r}")
        return raw
    raise SettingsError(f"{name} must be none, sqlite:///<absolute path> or redis://host:port/db, got {raw!r}")


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name} must be between {lo:g} and {hi:g}, got {value:g}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def log_level(env: Mapping[str, str]) -> str:
    """``LOG_LEVEL`` (validated), else the reference's ``RUST_LOG``.

    ``RUST_LOG`` belongs to the Rust proxy's logger, whose directives look like
    ``info``, ``my_crate=debug,warn`` or a bare target ``my_crate`` (all levels
    for it): a bare level is the global one, else the first level named, a bare
    target meaning trace. It is read leniently — a unit file carried over from
    the reference must never stop the service — and anything unreadable is info.
    """
    raw = env.get("LOG_LEVEL", "").strip()
    if raw:
        level = _LEVELS.get(raw.lower())
        if level is None:
            raise SettingsError(f"LOG_LEVEL must be one of {', '.join(_LEVELS)}, got {raw!r}")
        return level
    directives = [d.strip() for d in env.get("RUST_LOG", "").split(",") if d.strip()]
    global_levels = [_LEVELS[d.lower()] for d in directives if "=" not in d and d.lower() in _LEVELS]
    if global_levels:
        return global_levels[-1]
    for directive in directives:
        target, _, level = directive.partition("=")
        if not level:
            return "DEBUG"  # a bare target: every level of it
        if level.lower() in _LEVELS:
            return _LEVELS[level.lower()]
    return "INFO"


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity, e.g. a container's cpuset), not the host's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _csv(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in env.get(name, "").split(",") if p.strip())


def compaction_prompt(env: Mapping[str, str]) -> str | None:
    """``COMPACTION_PROMPT`` (the text), else the file ``COMPACTION_PROMPT_FILE`` names, else None.

    Read once at start, so a missing or unreadable file stops the service
    instead of failing the first compaction.
    """
    text = env.get("COMPACTION_PROMPT", "").strip()
    path = env.get("COMPACTION_PROMPT_FILE", "").strip()
    if text and path:
        raise SettingsError("Set COMPACTION_PROMPT or COMPACTION_PROMPT_FILE, not both")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read().strip()
        except (OSError, UnicodeError) as exc:
            raise SettingsError(f"COMPACTION_PROMPT_FILE cannot be read: {exc}") from None
        if not text:
            raise SettingsError(f"COMPACTION_PROMPT_FILE {path!r} is empty")
    return text or None


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ``SettingsError`` naming the bad one."""
    env = os.environ if env is None else env
    port_raw = env.get("PORT", "").strip()
    backend_key = env.get("BACKEND_API_KEY", "").strip() or None
    proxy_keys = frozenset(_csv(env, "PROXY_API_KEYS"))
    if backend_key and not proxy_keys:
        raise SettingsError(
            "BACKEND_API_KEY is set but PROXY_API_KEYS is empty: the proxy would relay the "
            "operator's key to anyone. Set PROXY_API_KEYS to the keys clients must present."
        )
    forward_headers = tuple(h.lower() for h in _csv(env, "FORWARD_HEADERS"))
    for header in forward_headers:
        if header in _NEVER_FORWARDED or header.startswith("proxy-"):
            raise SettingsError(f"FORWARD_HEADERS may not name {header!r} (a credential or hop-by-hop header)")
    return Settings(
        backend_url=backend_chat_url(env.get("BACKEND_URL", "").strip() or DEFAULT_BACKEND_URL),
        host_port=_int(env, "HOST_PORT", 8282, 1, 65535),
        port=_int(env, "PORT", 0, 1, 65535) if port_raw else None,
        backend_timeout_secs=_float(env, "BACKEND_TIMEOUT_SECS", 600.0, 1.0, 86400.0),
        backend_idle_timeout_secs=_float(env, "BACKEND_IDLE_TIMEOUT_SECS", 300.0, 1.0, 86400.0),
        keepalive_secs=_float(env, "SSE_KEEPALIVE_SECS", 15.0, 0.05, 3600.0),
        log_level=log_level(env),
        log_format=_choice(env, "LOG_FORMAT", "text", ("text", "json")),
        web_concurrency=_int(env, "WEB_CONCURRENCY", _usable_cpus(), 1, 1024),
        graceful_timeout_secs=_float(env, "GRACEFUL_TIMEOUT_SECS", 600.0, 1.0, 86400.0),
        breaker_enabled=_bool(env, "CIRCUIT_BREAKER_ENABLED", True),
        breaker_threshold=_int(env, "CIRCUIT_BREAKER_THRESHOLD", 5, 1, 1_000_000),
        breaker_recovery_secs=_float(env, "CIRCUIT_BREAKER_RECOVERY_SECS", 30.0, 0.1, 86400.0),
        breaker_model_slots=_int(env, "CIRCUIT_BREAKER_MODEL_SLOTS", 256, 1, MAX_MODEL_SLOTS),
        builtin_tools=_choice(env, "BUILTIN_TOOLS", "drop", ("drop", "reject")),
        max_tokens_field=_choice(
            env, "MAX_TOKENS_FIELD", "max_tokens", ("max_tokens", "max_completion_tokens")
        ),
        forward_verbosity=_bool(env, "FORWARD_VERBOSITY", False),
        forward_prompt_cache_key=_bool(env, "FORWARD_PROMPT_CACHE_KEY", False),
        forward_prompt_cache_retention=_bool(env, "FORWARD_PROMPT_CACHE_RETENTION", False),
        forward_prompt_cache_options=_bool(env, "FORWARD_PROMPT_CACHE_OPTIONS", False),
        forward_service_tier=_bool(env, "FORWARD_SERVICE_TIER", False),
        reasoning_in_history=_bool(env, "REASONING_IN_HISTORY", True),
        backend_api_key=backend_key,
        proxy_api_keys=proxy_keys,
        forward_headers=forward_headers,
        json_upstream=_choice(env, "JSON_UPSTREAM", "json", ("json", "stream")),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", MAX_BODY_BYTES, 1024, 1024 * 1024 * 1024),
        body_read_timeout_secs=_float(env, "BODY_READ_TIMEOUT_SECS", 60.0, 0.1, 3600.0),
        max_event_bytes=_int(env, "MAX_UPSTREAM_EVENT_BYTES", MAX_EVENT_BYTES, 1024, 256 * 1024 * 1024),
        response_store_url=store_url(env.get("RESPONSE_STORE_URL", "").strip()),
        response_store_ttl_secs=_int(env, "RESPONSE_STORE_TTL_SECS", 30 * 24 * 3600, 1, 10 * 365 * 24 * 3600),
        response_store_max_object_bytes=_int(
            env, "RESPONSE_STORE_MAX_OBJECT_BYTES", 16 * 1024 * 1024, 64 * 1024, 512 * 1024 * 1024
        ),
        response_store_timeout_secs=_float(env, "RESPONSE_STORE_TIMEOUT_SECS", 3.0, 0.05, 60.0),
        response_store_owner_secret=env.get("RESPONSE_STORE_OWNER_SECRET", "").strip() or None,
        background_lease_secs=_float(env, "BACKGROUND_LEASE_SECS", 10.0, 2.0, 30.0),
        background_max_per_worker=_int(env, "BACKGROUND_MAX_PER_WORKER", 64, 1, 1000),
        background_max_per_key=_int(env, "BACKGROUND_MAX_PER_KEY", 32, 1, 1_000_000),
        metrics_dir=env.get("METRICS_DIR", "").strip() or None,
        models_cache_secs=_float(env, "MODELS_CACHE_SECS", 60.0, 0.0, 86400.0),
        websocket_max_secs=_float(env, "WEBSOCKET_MAX_SECS", 3600.0, 1.0, 7 * 86400.0),
        websocket_ping_secs=_float(env, "WEBSOCKET_PING_SECS", 20.0, 1.0, 3600.0),
        websocket_max_lanes=_int(env, "WEBSOCKET_MAX_LANES", 32, 0, 1024),
        websocket_max_active=_int(env, "WEBSOCKET_MAX_ACTIVE", 16, 1, 256),
        websocket_max_queued=_int(env, "WEBSOCKET_MAX_QUEUED", 64, 0, 4096),
        shutdown_linger_secs=_float(env, "SHUTDOWN_LINGER_SECS", 10.0, 0.0, 3600.0),
        shutdown_drain_secs=_float(env, "SHUTDOWN_DRAIN_SECS", 0.0, 0.0, 3600.0),
        compaction_prompt=compaction_prompt(env),
    )
