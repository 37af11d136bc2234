"""ExaBGP's API pipes on the event loop (`bgpd.exabgp.pipes`), over real pipes: lines split and joined
across reads, end of file, an over-long line, commands larger than the pipe written in order without
blocking the loop, a reader gone."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading

import pytest

from bgpd.exabgp import pipes as pipes_mod
from bgpd.exabgp.pipes import LineTooLong, Pipes

DEADLINE = 10.0


class Ends:
    """Both pipes: ExaBGP's ends (`exa_events` written by the test, `exa_commands` read by it)."""

    def __init__(self) -> None:
        self.events_r, self.exa_events = os.pipe()
        self.exa_commands, self.commands_w = os.pipe()
        self.lines: list[str] = []
        self.closed: list[Exception | None] = []

    def open(self, loop: asyncio.AbstractEventLoop) -> Pipes:
        return Pipes(loop, self.events_r, self.commands_w, self.lines.append, self.closed.append)

    def close(self) -> None:
        for fd in (self.exa_events, self.exa_commands):
            with contextlib.suppress(OSError):
                os.close(fd)


async def _until(predicate: object, what: str) -> None:
    assert callable(predicate)
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE
    while not predicate():
        if loop.time() > end:
            pytest.fail(f"timed out waiting for: {what}")
        await asyncio.sleep(0.001)


def test_lines_split_and_joined_across_reads_then_end_of_file() -> None:
    async def main() -> None:
        ends = Ends()
        p = ends.open(asyncio.get_running_loop())
        os.write(ends.exa_events, b'{"a": 1}\n{"b"')
        await _until(lambda: ends.lines == ['{"a": 1}\n'], "the first line")
        os.write(ends.exa_events, b': 2}\n{"c": 3}\n\xff\n{"d"')
        await _until(lambda: len(ends.lines) == 4, "three more lines")
        assert ends.lines[1:] == ['{"b": 2}\n', '{"c": 3}\n', "\ufffd\n"]
        assert not ends.closed
        os.close(ends.exa_events)  # ExaBGP gone: its partial last line still arrives, then the end
        await _until(lambda: bool(ends.closed), "end of file")
        assert ends.lines[-1] == '{"d"' and ends.closed == [None] and p.closed
        with pytest.raises(OSError):
            os.fstat(ends.events_r)  # closed by Pipes
        ends.close()

    asyncio.run(main())


def test_on_close_follows_once_when_the_last_lines_handler_closes_the_pipes() -> None:
    async def main() -> None:
        ends = Ends()
        box: list[Pipes] = []

        def on_line(text: str) -> None:
            ends.lines.append(text)
            box[0].close()  # the owner gives up on this ExaBGP while handling its last line

        p = Pipes(asyncio.get_running_loop(), ends.events_r, ends.commands_w, on_line, ends.closed.append)
        box.append(p)
        os.write(ends.exa_events, b'{"partial"')
        os.close(ends.exa_events)
        await _until(lambda: bool(ends.closed), "on_close")
        await asyncio.sleep(0)
        assert ends.lines == ['{"partial"'] and ends.closed == [None] and p.closed
        ends.close()

    asyncio.run(main())


def test_a_line_longer_than_the_limit_ends_the_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipes_mod, "MAX_LINE", 100)

    async def main() -> None:
        ends = Ends()
        ends.open(asyncio.get_running_loop())
        os.write(ends.exa_events, b"ok\n" + b"x" * 101)
        await _until(lambda: bool(ends.closed), "channel ended")
        assert ends.lines[0] == "ok\n" and isinstance(ends.closed[0], LineTooLong)
        ends.close()

    asyncio.run(main())


def test_commands_larger_than_the_pipe_arrive_whole_in_order_without_blocking_the_loop() -> None:
    async def main() -> None:
        ends = Ends()
        loop = asyncio.get_running_loop()
        p = ends.open(loop)
        capacity = fcntl.fcntl(ends.commands_w, 1032)  # F_GETPIPE_SZ
        chunks = [f"announce route {i}\n".encode() * 50 for i in range(2000)]
        expected = b"".join(chunks)
        assert len(expected) > 4 * capacity
        for chunk in chunks:
            p.write(chunk)  # nobody reads yet: the pipe fills, the rest waits in Pipes
        assert p.pending > 0 and len(expected) - p.pending <= capacity  # the pipe took what fits
        ticks = 0

        async def tick() -> None:  # the loop keeps running while the commands wait
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(tick())
        got = bytearray()

        def read_all() -> None:
            while len(got) < len(expected):
                got.extend(os.read(ends.exa_commands, 1 << 14))

        reader = threading.Thread(target=read_all)
        reader.start()
        await _until(lambda: p.pending == 0 and not reader.is_alive(), "all commands read")
        ticker.cancel()
        assert bytes(got) == expected and ticks > 0
        p.close()
        ends.close()

    asyncio.run(main())


def test_a_reader_gone_drops_commands_without_raising() -> None:
    async def main() -> None:
        ends = Ends()
        p = ends.open(asyncio.get_running_loop())
        os.close(ends.exa_commands)
        p.write(b"announce route 1\n")  # EPIPE (SIGPIPE is ignored by Python)
        assert p.pending == 0 and not p.closed
        p.close()
        p.close()  # idempotent
        p.write(b"after close\n")
        assert p.pending == 0
        os.close(ends.exa_events)

    asyncio.run(main())
