"""The HTTP server's write coalescing: one send per response, bytes in order, nothing held."""

from __future__ import annotations

import asyncio
from typing import Any

from agent.serving.http_server import _CoalescingTransport


class _Recorder(asyncio.Transport):
    """A transport that keeps what it was given, one entry per ``write`` (one send)."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.sends.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return "peer" if name == "peername" else default


def _run(steps: Any) -> _Recorder:
    recorder = _Recorder()

    async def main() -> None:
        transport = _CoalescingTransport(recorder, asyncio.get_running_loop())
        await steps(transport)
        await asyncio.sleep(0)  # one more step of the loop: whatever was held is out

    asyncio.run(main())
    return recorder


def test_a_head_and_body_written_in_one_step_go_out_as_one_send() -> None:
    async def steps(t: _CoalescingTransport) -> None:
        t.write(b"HTTP/1.1 200 OK\r\n\r\n")
        t.write(b"body")

    assert _run(steps).sends == [b"HTTP/1.1 200 OK\r\n\r\nbody"]


def test_a_lone_write_is_sent_at_the_end_of_the_step() -> None:
    async def steps(t: _CoalescingTransport) -> None:
        t.write(b"head")
        await asyncio.sleep(0)
        t.write(b"later")

    assert _run(steps).sends == [b"head", b"later"]


def test_bytes_keep_their_order_across_many_writes() -> None:
    async def steps(t: _CoalescingTransport) -> None:
        for i in range(7):
            t.write(b"%d" % i)
            if i % 3 == 0:
                await asyncio.sleep(0)

    assert b"".join(_run(steps).sends) == b"0123456"


def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    async def steps(t: _CoalescingTransport) -> None:
        t.write(b"431 refused")
        t.close()

    recorder = _run(steps)
    assert recorder.sends == [b"431 refused"] and recorder.closed

    async def aborting(t: _CoalescingTransport) -> None:
        t.write(b"never")
        t.abort()

    assert _run(aborting).sends == []


def test_everything_else_is_the_transport_s() -> None:
    async def steps(t: _CoalescingTransport) -> None:
        assert t.get_extra_info("peername") == "peer"
        assert t.is_closing() is False

    _run(steps)
