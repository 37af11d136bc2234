"""The supervisor's hand-over of ExaBGP's pipes (`bgpd.exabgp.supervisor.ExaBGP._accept_pipes`, over a real
unix socket with real pipes, no ExaBGP): a failure while one ExaBGP attaches (here the owner's
`on_connect` raising) is logged, that ExaBGP's pipes are closed, and the next ExaBGP still attaches."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path
from typing import Any

from bgpd.exabgp import bridge
from bgpd.exabgp.supervisor import ExaBGP

DEADLINE = 10.0


def _at_end(fd: int) -> bool:
    """End of file on the non-blocking pipe `fd` (bytes waiting are read and dropped)."""
    try:
        return os.read(fd, 1 << 16) == b""
    except BlockingIOError:
        return False


async def _until(predicate: Any, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE
    while not predicate():
        assert loop.time() < end, f"timed out waiting for: {what}"
        await asyncio.sleep(0.005)


def _hand_over(path: Path) -> tuple[int, int]:
    """What bridge.py does: pass an event pipe's read end and a command pipe's write end; ExaBGP's ends
    (the event pipe's write end, the command pipe's read end) are returned."""
    events_r, events_w = os.pipe()
    commands_r, commands_w = os.pipe()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(path))
        socket.send_fds(sock, [bridge.HELLO], [events_r, commands_w])
    os.close(events_r)
    os.close(commands_w)
    return events_w, commands_r


def test_a_failed_attach_does_not_keep_the_next_exabgp_from_attaching(tmp_path: Path) -> None:
    async def main() -> None:
        connects: list[int] = []

        def on_connect() -> None:
            connects.append(1)
            if len(connects) == 1:
                raise RuntimeError("a bug in the owner")

        exa = ExaBGP(str(tmp_path), None, [], lambda _l: None, on_connect, lambda: None)  # type: ignore[arg-type]
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(exa.socket_path))
        listener.listen(4)
        listener.setblocking(False)
        exa._listener = listener
        accept = asyncio.create_task(exa._accept_pipes())
        ends: list[int] = []
        try:
            first = _hand_over(exa.socket_path)
            ends += first
            await _until(lambda: len(connects) == 1, "the first attach")
            # its pipes were closed by bgpd: ExaBGP would read end of file on its command pipe
            os.set_blocking(first[1], False)
            await _until(lambda: _at_end(first[1]), "the first ExaBGP's pipes closed")
            assert not exa.connected.is_set() and not accept.done()
            second = _hand_over(exa.socket_path)
            ends += second
            await _until(lambda: len(connects) == 2 and exa.connected.is_set(), "the second attach")
            assert not accept.done()
        finally:
            accept.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await accept
            await exa.stop()
            listener.close()
            for fd in ends:
                with contextlib.suppress(OSError):
                    os.close(fd)

    asyncio.run(main())
