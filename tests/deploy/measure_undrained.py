"""How many requests a restart loses when HAProxy is *not* told first (a measurement, not a test).

    .venv/bin/python -m tests.deploy.measure_undrained [--signal TERM|HUP] [--cycles 8] [--threads 8]
        [--new-connections] [--linger SECS] [--drain SECS]

Two instances behind the shipped HAProxy config, continuous keep-alive load,
then ``--cycles`` times: SIGHUP to proxy1 (or SIGTERM and a restart on its port)
with no ``set server … state drain`` before it. Prints the requests sent and
lost per cycle. ``--linger`` sets the instances' ``SHUTDOWN_LINGER_SECS`` (0:
uvicorn's own shutdown, which closes idle connections at once and so loses a
request now and then; see ``proxy/worker.py``), ``--drain`` their
``SHUTDOWN_DRAIN_SECS`` (SIGTERM only).
"""
from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
import time
from pathlib import Path

from proxy.devtools import start_mock
from tests.deploy.conftest import Fleet
from tests.deploy.kinds import json_turn, stream_turn
from tests.deploy.load import Load
from tests.faults.helpers import worker_pids
from tests.http import wait_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signal", choices=("TERM", "HUP"), default="TERM")
    parser.add_argument("--cycles", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--new-connections", action="store_true",
                        help="half the client threads open a new connection per request")
    parser.add_argument("--linger", help="SHUTDOWN_LINGER_SECS (default: the setting's default)")
    parser.add_argument("--drain", help="SHUTDOWN_DRAIN_SECS (default: the setting's default)")
    args = parser.parse_args()
    env = {name: value for name, value in (("SHUTDOWN_LINGER_SECS", args.linger), ("SHUTDOWN_DRAIN_SECS", args.drain))
           if value is not None}
    logs = Path(tempfile.mkdtemp(prefix="undrained-"))
    mock = start_mock(logs / "mock.log")
    fleet = None
    try:
        fleet = Fleet(mock.url + "/v1", logs, env)
        kinds = {"json": json_turn("mock-echo"), "stream": stream_turn("mock-stream-20")}
        lost = []
        with Load(fleet.url, kinds, threads=args.threads, all_keepalive=not args.new_connections) as load:
            load.wait_until(lambda out: len(out) >= 100, 60, "load running")
            started = time.time()
            for _ in range(args.cycles):
                before = len(load.failures())
                service = fleet.instances["proxy1"]
                if args.signal == "HUP":
                    old = set(worker_pids(service))
                    service.signal(signal.SIGHUP)
                    wait_for(lambda: len(set(worker_pids(service)) - old) == 2 and not set(worker_pids(service)) & old,
                             60, what="new workers")
                else:
                    service.signal(signal.SIGTERM)
                    service.proc.wait(60)
                    service.stop()
                    fleet.start("proxy1")
                fleet.haproxy.wait_status("proxy1", "UP")
                time.sleep(1.0)  # let traffic settle on it again before the next cycle
                lost.append(len(load.failures()) - before)
            elapsed = time.time() - started
        outcomes = load.outcomes()
        print(f"SIG{args.signal} x{args.cycles} without draining HAProxy first {env or '(defaults)'}{' half new connections' if args.new_connections else ''}: {len(outcomes)} requests "
              f"(~{len(outcomes) / elapsed:.0f}/s), {sum(lost)} lost, per cycle {lost}")
        for o in load.failures()[:10]:
            print("  " + o.describe())
    finally:
        if fleet is not None:
            fleet.stop()
        mock.stop()
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()
