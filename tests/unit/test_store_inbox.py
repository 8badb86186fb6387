"""``Inbox``: what store threads post runs on the loop, in order, whatever else happens."""
from __future__ import annotations

import asyncio
import socket
import threading

import pytest

from proxy.store.inbox import Inbox


def test_posts_from_a_thread_run_on_the_loop_in_posting_order():
    async def main() -> None:
        loop = asyncio.get_running_loop()
        inbox = Inbox(loop)
        seen: list[tuple[int, bool]] = []
        done = loop.create_future()

        def record(n: int) -> None:
            seen.append((n, threading.current_thread() is threading.main_thread()))
            if n == 999:
                done.set_result(None)

        def producer() -> None:
            for n in range(1000):
                inbox.post(record, n)

        thread = threading.Thread(target=producer)
        thread.start()
        await asyncio.wait_for(done, 10)
        thread.join()
        inbox.close()
        assert seen == [(n, True) for n in range(1000)]
    asyncio.run(main())


def test_posts_beyond_what_the_socket_buffer_holds_are_all_found():
    """The loop busy while a thread posts far more bytes than the socket takes: the writes that
    would block are skipped, and the bytes already there still wake the loop for every post."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        inbox = Inbox(loop)
        buffer = inbox._wsock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        count = 4 * buffer + 1000  # each post writes one byte
        seen: list[int] = []
        thread = threading.Thread(target=lambda: [inbox.post(seen.append, n) for n in range(count)])
        thread.start()
        thread.join()  # the loop did not run meanwhile: nothing drained
        assert not seen
        for _ in range(1000):
            if len(seen) == count:
                break
            await asyncio.sleep(0.005)
        inbox.close()
        assert seen == list(range(count))
    asyncio.run(main())


def test_a_failing_callback_does_not_strand_the_posts_after_it():
    async def main() -> None:
        loop = asyncio.get_running_loop()
        failures: list[BaseException] = []
        loop.set_exception_handler(lambda _loop, context: failures.append(context["exception"]))
        inbox = Inbox(loop)
        seen: list[int] = []
        done = loop.create_future()

        def fails() -> None:
            raise ValueError("boom")

        def post_all() -> None:
            inbox.post(seen.append, 1)
            inbox.post(fails)
            inbox.post(seen.append, 2)
            inbox.post(done.set_result, None)

        threading.Thread(target=post_all).start()
        await asyncio.wait_for(done, 10)
        inbox.close()
        assert seen == [1, 2]
        assert [str(e) for e in failures] == ["boom"]
    asyncio.run(main())


def test_posting_to_a_closed_inbox_raises_oserror_and_close_is_safe_after_the_loop():
    loop = asyncio.new_event_loop()
    inbox = Inbox(loop)
    loop.close()
    inbox.close()  # the loop closed first: nothing to unregister from
    with pytest.raises(OSError):
        inbox.post(print, "nobody is listening")
