"""``python -m proxy.mock --host 127.0.0.1 --port 9100 [--workers N]``.

Binds the socket itself so ``--port 0`` works: the ready line names the real port,
which is how ``tests/mock_client.py`` avoids racing for a free port.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys

import uvicorn
from uvicorn._compat import asyncio_run
from uvicorn.supervisors import Multiprocess

APP = "proxy.mock.app:app"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m proxy.mock", description="Scripted mock Chat Completions backend.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port (printed on the ready line)")
    parser.add_argument(
        "--workers", type=int, default=1, help="scripts and recordings are per worker: keep 1 for tests"
    )
    parser.add_argument("--max-records", type=int, default=10000, help="request log size (oldest dropped)")
    args = parser.parse_args(argv)
    os.environ["MOCK_MAX_RECORDS"] = str(args.max_records)

    config = uvicorn.Config(
        APP,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
        backlog=4096,
    )
    sock = config.bind_socket()
    host, port = sock.getsockname()[:2]
    if args.workers > 1:
        print(f"mock backend listening on http://{host}:{port}", flush=True)
        Multiprocess(config, sockets=[sock]).run()
        return
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"mock backend listening on http://{host}:{port}", flush=True)
        await task

    try:
        asyncio_run(serve(), loop_factory=config.get_loop_factory())
    except KeyboardInterrupt:
        pass
    if not server.started:
        sys.exit(3)


if __name__ == "__main__":
    main()
