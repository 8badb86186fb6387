"""How many requests a restart loses when HAProxy is *not* told first (a measurement, not a test).

    .venv/bin/python -m tests.deploy.measure_undrained [--signal TERM|HUP] [--cycles 8] [--threads 8]

Two instances behind the shipped HAProxy config, continuous keep-alive load,
then ``--cycles`` times: SIGHUP to proxy1 (or SIGTERM and a restart on its port)
with no ``set server … state drain`` before it. Prints the requests sent and
lost per cycle. The loss comes from uvicorn's shutdown closing connections that
have no request in progress yet (see ``test_rolling_restart.py``); the rolling
restart test shows the drained procedure loses none.
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
from tests.deploy.load import Load, json_turn, stream_turn
from tests.faults.helpers import worker_pids
from tests.http import wait_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signal", choices=("TERM", "HUP"), default="TERM")
    parser.add_argument("--cycles", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="undrained-"))
    mock = start_mock(logs / "mock.log")
    fleet = None
    try:
        fleet = Fleet(mock.url + "/v1", logs, {})
        kinds = {"json": json_turn("mock-echo"), "stream": stream_turn("mock-stream-20")}
        lost = []
        with Load(fleet.url, kinds, threads=args.threads, all_keepalive=True) as load:
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
        print(f"SIG{args.signal} x{args.cycles} without draining: {len(outcomes)} requests "
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
