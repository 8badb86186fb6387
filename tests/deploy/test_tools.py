"""The deployment tests' own instruments, checked against the cases that once misled them."""
from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

from tests.deploy.tools import group_pids
from tests.http import wait_for

# The main thread leaves alone (pthread_exit), as a killed thread group's main thread may
# leave first, while a second thread, and with it the listening socket, lives on.
MAIN_THREAD_EXITS_FIRST = textwrap.dedent("""
    import ctypes, socket, threading, time
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    print(listener.getsockname()[1], flush=True)
    threading.Thread(target=time.sleep, args=(1.5,)).start()
    time.sleep(0.1)
    ctypes.CDLL(None).pthread_exit(None)
""")


def test_group_pids_counts_a_zombie_whose_threads_still_run() -> None:
    proc = subprocess.Popen([sys.executable, "-c", MAIN_THREAD_EXITS_FIRST], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        wait_for(lambda: open(f"/proc/{proc.pid}/stat").read().split(") ")[1][0] == "Z", 5, what="main thread gone")
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) == 0, "the listener should still be open"
        assert group_pids(proc.pid) == [proc.pid]
        wait_for(lambda: not group_pids(proc.pid), 5, interval=0.01, what="the last thread to exit")
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "no thread runs, so the listener must be closed"
    finally:
        proc.kill()
        proc.wait(5)
