"""HAProxy, with the shipped ``conf/haproxy.cfg``, in front of two proxy instances.

- The file as shipped parses (``haproxy -c``), with its defaults.
- One instance SIGKILLed (master and workers) under continuous load: the only
  failures are requests in flight on it at the kill; HAProxy retries refused
  connections on the survivor, marks the dead one down, and takes it back
  when it is restarted on the same port. Chained ``previous_response_id``
  turns (the instances share one Redis store) go on on the survivor from
  predecessors the dead instance had served, none breaks with
  ``previous_response_not_found``, and after the rejoin they cross between
  the instances both ways.
- An instance whose circuit breaker opens (``/health`` 503) leaves rotation, and
  comes back through ``/health``'s "recovering" answer, whose probe closes it.
- A graceful HAProxy reload under load loses nothing.
- WebSocket mode through it: two chained turns with the openai SDK (HAProxy logs
  the upgrade, 101); an idle socket outlives ``timeout tunnel`` (lowered here)
  because the proxy pings it, and is closed at that limit when it pings too rarely.
- HAProxy's own answers are OpenAI-shaped JSON: 503 with every instance down, 502 from an
  instance answering garbage, and every `http-error` status of the file, answered for real.
- A connection that never sends a byte is closed silently at ``timeout http-request``
  (``option http-ignore-probes``); one that sent part of a head still gets its 408.

Each test prints its figures (``pytest -s`` shows them).
"""
from __future__ import annotations

import os
import re
import socket
import socketserver
import subprocess
import threading
import time

import httpx
import pytest

from proxy.devtools import free_port
from proxy.errors import type_for_status
from tests.deploy.haproxy import BACKEND, CFG, HAProxy, StatusWatch
from tests.deploy.kinds import CHAIN, KINDS, ChainTurn
from tests.deploy.load import Load, Outcome
from tests.deploy.tools import binary, local_ports_to
from tests.deploy.ws import idle_between_turns, sdk_chained_turns
from tests.faults.helpers import worker_pids
from tests.http import health, post, wait_for
from tests.mock_client import MockControl

pytestmark = pytest.mark.slow


def test_shipped_config_is_valid_as_is():
    """`haproxy -c` on the file with none of its variables set: the defaults must parse, warning-free."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAPROXY_", "RESPONSES_PROXY_"))}
    out = subprocess.run([binary("haproxy"), "-c", "-f", str(CFG)], env=env, capture_output=True, text=True, timeout=30)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "WARNING" not in text and "ALERT" not in text, text


def _served(lines, server: str, after: float = 0.0) -> list:
    return [ln for ln in lines if ln.server == server and ln.status == 200 and ln.received >= after]


def _crossings(turns: list[ChainTurn], where: dict[str, str], after: float, started: dict[str, float]) -> dict:
    """Successful chain turns begun after ``after``, by (instance that served it, instance that
    served its predecessor)."""
    out: dict[tuple[str, str], int] = {}
    for t in turns:
        if t.ok and t.previous_request_id and started[t.request_id] > after:
            key = (where.get(t.request_id, "unlogged"), where.get(t.previous_request_id, "unlogged"))
            out[key] = out.get(key, 0) + 1
    return out


def test_kill_one_instance_under_load(fleet_factory, mock_backend):
    """Every kind of request in ``KINDS`` must go on on the survivor, chained turns included."""
    fleet = fleet_factory()
    hap = fleet.haproxy
    backend = MockControl(mock_backend.url)

    def chain_turn_upstream_on_proxy1() -> bool:
        """A chained turn proxy1 is waiting for the backend to finish (not yet stored), begun less
        than half of its ~0.6 s ago: it is still in flight when the kill lands a moment later."""
        ports = local_ports_to(worker_pids(fleet.instances["proxy1"]), mock_backend.port)
        now = time.time()
        return any(r["client"] and r["client"][1] in ports and not r["ended_at"] and now - r["started_at"] < 0.3
                   for r in backend.requests(CHAIN.model))

    with StatusWatch(hap) as watch, Load(fleet.url, KINDS, threads=8) as load:
        wait_for(lambda: all(len(_served(hap.log_lines(), s)) >= 5 for s in ("proxy1", "proxy2")), 30,
                 what="both instances serving")
        # Kill while proxy1 holds requests (streams last ~1.6 s; slow JSON ~1 s), a chained turn among them.
        wait_for(lambda: hap.current_sessions("proxy1") >= 2 and chain_turn_upstream_on_proxy1(), 30, interval=0.02,
                 what="requests in flight on proxy1, a chained turn among them")
        sessions_at_kill = hap.current_sessions("proxy1")
        kill_sent, kill_done = fleet.kill("proxy1")
        marked_down = watch.first("proxy1", "DOWN", after=kill_sent)
        # The survivor carries everything, every kind of request.
        load.wait_until(
            lambda out: all(sum(o.ok and o.kind == k and o.started > marked_down for o in out) >= 3 for k in KINDS),
            60, "every kind served after the mark-down",
        )
        restarted = time.time()
        fleet.start("proxy1")  # the same port
        ready = time.time()
        rejoined = watch.first("proxy1", "UP", after=ready)
        wait_for(lambda: len(_served(hap.log_lines(), "proxy1", after=rejoined)) >= 5, 30, what="traffic on proxy1 again")

        def crossed_both_ways() -> bool:
            served = {ln.request_id: ln.server for ln in hap.log_lines()}
            started = {o.request_id: o.started for o in load.outcomes()}
            across = _crossings(CHAIN.turns_of(load.prefix), served, rejoined, started)
            return bool(across.get(("proxy1", "proxy2")) and across.get(("proxy2", "proxy1")))

        wait_for(crossed_both_ways, 60, interval=0.2, what="chains crossing between the instances after the rejoin")
    outcomes = load.outcomes()
    lines = {ln.request_id: ln for ln in hap.log_lines()}
    served = {rid: ln.server for rid, ln in lines.items()}
    started = {o.request_id: o.started for o in outcomes}
    turns = CHAIN.turns_of(load.prefix)

    def where(o: Outcome) -> str:
        return served.get(o.request_id, "unlogged")

    failures = [o for o in outcomes if not o.ok]
    # In flight on proxy1 at the kill: begun before it was dead, not ended before the signal, and
    # not logged elsewhere. (HAProxy logs no line when it closes a keep-alive client connection
    # silently because a reused server connection died under its request: the client may retry.)
    in_flight = [o for o in outcomes if o.started < kill_done and o.ended >= kill_sent and where(o) in ("proxy1", "unlogged")]
    redispatched = [ln for ln in lines.values() if ln.redispatched]
    after_down = [o for o in outcomes if o.started > marked_down]
    on_survivor = [o for o in outcomes if kill_done < o.started < rejoined and o.ok and where(o) == "proxy2"]
    after_rejoin = _served(lines.values(), "proxy1", after=rejoined)
    figures = (
        f"kill test: {len(outcomes)} requests, {len(failures)} failed; proxy1 held {sessions_at_kill} sessions at the "
        f"kill, {len(in_flight)} requests in flight there; kill took {kill_done - kill_sent:.3f} s; marked down "
        f"{marked_down - kill_done:.3f} s after; {len(redispatched)} requests redispatched after a refused "
        f"connection; {len(after_down)} sent after the mark-down ({sum(not o.ok for o in after_down)} failed); "
        f"{len(on_survivor)} served by proxy2 alone; proxy1 back {rejoined - ready:.3f} s after its restart "
        f"(restart took {ready - restarted:.2f} s), {len(after_rejoin)} served by it since"
    )
    # Chains: the first turn after the kill whose predecessor the dead instance had served.
    chains_after_kill = _crossings(turns, served, kill_done, started)
    chains_after_rejoin = _crossings(turns, served, rejoined, started)
    broken = [t for t in turns if "previous_response_not_found" in t.detail]
    failed_turns = [t for t in turns if not t.ok]
    retried = [t for t in failed_turns if any(u.ok and u.chain == t.chain and u.turn == t.turn for u in turns)]
    chain_figures = (
        f"chains: {len({t.chain for t in turns})} chains, {sum(t.ok for t in turns)} turns served, "
        f"{len(failed_turns)} failed ({'; '.join(sorted({t.detail for t in failed_turns})) or 'none'}), "
        f"{len(retried)} of them sent again and served, {len(broken)} broken (previous_response_not_found); "
        f"after the kill {chains_after_kill.get(('proxy2', 'proxy1'), 0)} turns on proxy2 continued from a predecessor "
        f"proxy1 had served; after the rejoin {chains_after_rejoin.get(('proxy1', 'proxy2'), 0)} on proxy1 from proxy2's, "
        f"{chains_after_rejoin.get(('proxy2', 'proxy1'), 0)} on proxy2 from proxy1's"
    )
    figures += "\n" + chain_figures
    print("\n" + figures)
    detail = figures + "\n" + "\n".join(f"{o.describe()} [{where(o)}]" for o in failures[:20])
    assert not broken, detail + "\n" + "\n".join(map(str, broken[:10]))
    assert chains_after_kill.get(("proxy2", "proxy1")), "no chain went on on the survivor from the dead one's turn\n" + detail
    assert failed_turns, "no chained turn was in flight on proxy1 at the kill\n" + detail
    assert len(retried) == len(failed_turns), "a failed turn was never served on retry\n" + detail
    assert in_flight, "the kill hit no request: " + detail
    for o in failures:
        assert o in in_flight, f"a failure that was not in flight on proxy1 at the kill: {o.describe()} [{where(o)}]\n" + detail
        assert "NOT OpenAI-shaped" not in o.detail, detail
    assert not [o for o in after_down if not o.ok], detail
    for kind in KINDS:
        assert any(o.kind == kind for o in on_survivor), f"no {kind} request served by the survivor alone\n" + detail
    # Traffic reached the restarted process itself (its own log), not just HAProxy's idea of it.
    new_log = fleet.instances["proxy1"].log_text()
    assert sum(ln.request_id in new_log for ln in after_rejoin) >= 5, detail


def test_open_breaker_takes_an_instance_out_and_the_probe_brings_it_back(fleet_factory):
    fleet = fleet_factory(CIRCUIT_BREAKER_THRESHOLD="2", CIRCUIT_BREAKER_RECOVERY_SECS="3")
    hap = fleet.haproxy
    sick = fleet.instances["proxy1"]
    with StatusWatch(hap) as watch:
        # Two backend failures on two models, seen by proxy1 alone (sent to it directly), open its
        # host breaker (one failing model would open only that model's).
        for model in ("mock-error-500", "mock-error-503"):
            assert post(sick.url, {"model": model, "input": "x"}).status_code == 502
        opened = time.time()
        assert health(sick.url)[0] == 503
        down = watch.first("proxy1", "DOWN", after=opened)
        # While it is out, clients never see its 503 circuit_open: the other instance answers.
        statuses = [post(fleet.url, {"model": "mock-echo", "input": "hi"}).status_code for _ in range(10)]
        assert statuses == [200] * 10, statuses
        # After the recovery time /health says "recovering" (200): HAProxy takes it back, and
        # the next requests through HAProxy include the probe that closes the breaker.
        up = watch.first("proxy1", "UP", after=down, timeout=30)
        assert health(sick.url)[1]["status"] == "recovering"

        def closed() -> bool:
            post(fleet.url, {"model": "mock-echo", "input": "probe"}).raise_for_status()
            return health(sick.url)[1]["status"] == "healthy"

        wait_for(closed, 30, interval=0.1, what="the probe through HAProxy to close proxy1's breaker")
    print(f"\nbreaker test: proxy1 marked down {down - opened:.3f} s after its breaker opened, "
          f"back up {up - down:.3f} s later (recovery time 3 s)")


def test_haproxy_reload_under_load_loses_nothing(fleet_factory):
    """`kill -USR2` to the master: a new worker takes the sockets, the old one finishes its streams and exits."""
    fleet = fleet_factory()
    hap = fleet.haproxy
    with Load(fleet.url, KINDS) as load:
        load.wait_until(lambda out: sum(o.ok for o in out) >= 20, 30, "load running")
        reloads = []
        for _ in range(2):
            old = set(hap.worker_pids())
            sent = time.time()
            hap.reload()
            new = wait_for(lambda: set(hap.worker_pids()) - old, 30, what="a new HAProxy worker")
            # The old worker stays while it still carries streams, then leaves on its own.
            wait_for(lambda: not set(hap.worker_pids()) & old, 60, what="the old HAProxy worker to finish and exit")
            reloads.append(time.time() - sent)
            assert len(new) == 1
            load.wait_until(lambda out: sum(o.ok and o.started > sent for o in out) >= 10, 30, "traffic after the reload")
    outcomes = load.outcomes()
    failures = [o for o in outcomes if not o.ok]
    across = [o for o in outcomes if o.kind == "stream" and o.started < sent < o.ended]
    print(f"\nhaproxy reload: {len(outcomes)} requests, {len(failures)} failed; old worker gone "
          + ", ".join(f"{s:.2f}" for s in reloads) + " s after each reload")
    assert not failures, "\n".join(o.describe() for o in failures[:20])
    assert across, "no stream was in flight across the last reload"


def _websocket_line(fleet):
    """HAProxy's log line for the fleet's last WebSocket (written when the tunnel closed)."""
    return wait_for(lambda: [ln for ln in fleet.haproxy.log_lines() if ln.request.startswith("GET /v1/responses ")],
                    10, what="HAProxy's log line for the WebSocket")[-1]


def test_websocket_chained_turns_through_haproxy(fleet_factory):
    fleet = fleet_factory()
    first, _ = sdk_chained_turns(fleet.url)
    # Logged when the tunnel closed: the handshake's 101, on one of the instances.
    upgrade = _websocket_line(fleet)
    assert upgrade.status == 101 and upgrade.server in ("proxy1", "proxy2"), upgrade
    assert '"WebSocket /v1/responses" [accepted]' in fleet.instances[upgrade.server].log_text()


TUNNEL_SECS = 2


@pytest.mark.parametrize("ping_secs, survives", [(1, True), (30, False)], ids=["pings", "no-pings-in-time"])
def test_an_idle_websocket_outlives_the_tunnel_timeout_thanks_to_the_pings(fleet_factory, ping_secs, survives):
    fleet = fleet_factory(haproxy_env={"HAPROXY_TUNNEL_TIMEOUT": f"{TUNNEL_SECS}s"}, WEBSOCKET_PING_SECS=str(ping_secs))
    idle_between_turns(fleet.url, 3 * TUNNEL_SECS, survives)
    line = _websocket_line(fleet)
    # A first termination character "c" or "s": a client- or server-side timeout ended the tunnel.
    print(f"\nidle WebSocket through HAProxy, pings every {ping_secs} s, tunnel timeout {TUNNEL_SECS} s: "
          f"termination {line.termination}, status {line.status}")
    assert (line.termination[0] in "cs") is not survives, line


# --------------------------------------------------------------------------- HAProxy's own answers


def _openai_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.headers, r.text[:300])
    assert r.headers["content-type"] == "application/json", r.headers
    doc = r.json()
    assert set(doc) == {"error"} and set(doc["error"]) == {"message", "type", "param", "code"}, doc
    assert doc["error"]["type"] == type_for_status(status) and doc["error"]["message"], doc
    return doc["error"]


class _HealthyButBroken(socketserver.BaseRequestHandler):
    """An "instance" that passes HAProxy's /health checks and answers every other request with
    bytes that are not HTTP: what a proxy instance crashing mid-answer looks like to HAProxy."""

    def handle(self) -> None:
        if self.request.recv(65536).startswith(b"GET /health "):
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        else:
            self.request.sendall(b"NOT HTTP AT ALL\r\n\r\n")


def test_haproxy_answers_no_instance_up_and_a_broken_instance_with_openai_json(logs_dir):
    """HAProxy's own 503 (every instance down) and 502 (an instance answered garbage) carry the
    OpenAI shape, as the shipped `http-error` lines promise (its defaults are HTML)."""
    dead = free_port()
    hap = HAProxy({"proxy1": dead, "proxy2": dead}, logs_dir / "haproxy-down.log")
    try:
        for method in ("GET", "POST"):
            r = httpx.request(method, hap.url + "/v1/responses", json={"model": "m", "input": "x"}, timeout=30)
            error = _openai_error(r, 503)
            assert error["code"] == "service_unavailable" and r.headers["retry-after"] == "1", error
    finally:
        hap.stop()
    broken = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _HealthyButBroken)
    threading.Thread(target=broken.serve_forever, daemon=True).start()
    port = broken.server_address[1]
    hap = HAProxy({"proxy1": port, "proxy2": port}, logs_dir / "haproxy-broken.log")
    try:
        hap.wait_status("proxy1", "UP")
        r = httpx.post(hap.url + "/v1/responses", json={"model": "m", "input": "x"}, timeout=30)
        assert _openai_error(r, 502)["code"] == "bad_gateway"
    finally:
        hap.stop()
        broken.shutdown()
        broken.server_close()


_HTTP_ERROR = re.compile(r"^\s*http-error status (\d+) content-type application/json string '(.*)'", re.M)


def test_every_http_error_of_the_shipped_config_is_openai_json(logs_dir, tmp_path):
    """Each `http-error` line of the shipped `defaults`, answered for real: a frontend of the test's
    own (a second file, under those defaults) denies `/<status>` with that status."""
    statuses = [int(code) for code, _ in _HTTP_ERROR.findall(CFG.read_text())]
    assert {400, 408, 500, 502, 503, 504} <= set(statuses), statuses
    port = free_port()
    rules = "".join(f"    http-request deny deny_status {code} if {{ path /{code} }}\n" for code in statuses)
    extra = tmp_path / "probe.cfg"
    extra.write_text(f"frontend http_error_probe\n    bind 127.0.0.1:{port}\n{rules}    default_backend {BACKEND}\n")
    dead = free_port()
    hap = HAProxy({"proxy1": dead, "proxy2": dead}, logs_dir / "haproxy-errors.log", extra_cfg=extra)
    try:
        for code in statuses:
            r = httpx.get(f"http://127.0.0.1:{port}/{code}", timeout=30)
            _openai_error(r, code)
    finally:
        hap.stop()


def _read_all(sock: socket.socket, wait: float) -> bytes:
    """Everything the peer sends until it closes (or ``wait`` seconds pass)."""
    sock.settimeout(wait)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        pass
    return got


def test_a_connection_that_never_sends_a_byte_is_closed_silently(logs_dir, tmp_path):
    """``option http-ignore-probes``: a connection opened and left silent past ``timeout http-request``
    (a health probe, a browser's preconnect, a port scan) is closed with nothing written, as nginx and
    the proxy itself do, instead of HAProxy 2.6's built-in HTML 408 (which no `http-error` rule can
    turn into JSON: its parser answers it). A client that sent part of a head still gets its 408."""
    port = free_port()
    extra = tmp_path / "probe.cfg"
    extra.write_text(
        f"frontend silent_probe\n    bind 127.0.0.1:{port}\n    timeout http-request 1s\n    default_backend {BACKEND}\n"
    )
    dead = free_port()
    hap = HAProxy({"proxy1": dead, "proxy2": dead}, logs_dir / "haproxy-probes.log", extra_cfg=extra)
    try:
        with socket.create_connection(("127.0.0.1", port)) as silent:
            started = time.monotonic()
            got = _read_all(silent, 10)
            closed_after = time.monotonic() - started
        assert got == b"", got[:200]
        assert 0.8 < closed_after < 5, closed_after
        with socket.create_connection(("127.0.0.1", port)) as partial:
            partial.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
            got = _read_all(partial, 10)
        assert got.startswith(b"HTTP/1.1 408"), got[:200]
        print(f"\nsilent connection closed after {closed_after:.2f} s with nothing written; a partial head got a 408")
    finally:
        hap.stop()
