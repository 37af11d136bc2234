"""ExaBGP's two API pipes, read and written from the asyncio event loop itself.

Events: the loop's selector watches the event pipe (`loop.add_reader`); each wake-up reads what the pipe
holds (at most READ_SIZE bytes, non-blocking `os.read`), splits it into lines and hands every complete
line to `on_line` at once, on the loop's thread - no stream object or task between the pipe and the
owner (a StreamReader costs a task wake-up, one more loop turn, per line). A line longer than MAX_LINE
bytes, a read error or end of file ends the channel: a partial last line is still handed over (not an
over-long one), then `on_close` is called once with the error (None for end of file).

Commands: `write` writes at once (`os.write`) what the pipe accepts; the rest waits in a buffer that
the loop writes out when the pipe has room again (`loop.add_writer`), so the loop never blocks and the
bytes keep their order. A write to a pipe nobody reads any more (EPIPE) drops what is buffered: the
reader's end of file follows and ends the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

READ_SIZE = 1 << 18  # bytes read per wake-up (asyncio's pipe transports read 256 KiB too)
MAX_LINE = 1 << 24  # a line longer than this (16 MiB, without its newline) is a broken channel


class LineTooLong(ValueError):
    """ExaBGP sent more than MAX_LINE bytes without a newline."""


class Pipes:
    """The event pipe `events_fd` (read) and the command pipe `commands_fd` (written) of one ExaBGP, on
    `loop`; both file descriptors are owned (closed by `close`) from here on and made non-blocking.
    `on_line(text)`: one event line, decoded as UTF-8 (undecodable bytes replaced), its newline kept.
    `on_close(error)`: the event pipe ended (None: end of file; else the OSError or LineTooLong)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        events_fd: int,
        commands_fd: int,
        on_line: Callable[[str], None],
        on_close: Callable[[Exception | None], None],
    ) -> None:
        self._loop = loop
        self.events_fd = events_fd
        self.commands_fd = commands_fd
        self._on_line = on_line
        self._on_close = on_close
        self._partial = b""  # the start of a line whose newline has not come yet
        self._out = bytearray()  # command bytes the pipe did not take yet
        self._writing = False  # add_writer registered
        self.closed = False
        os.set_blocking(events_fd, False)
        os.set_blocking(commands_fd, False)
        loop.add_reader(events_fd, self._readable)

    # --- events ------------------------------------------------------------------------------------
    def _readable(self) -> None:
        try:
            data = os.read(self.events_fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._end(exc)
            return
        if not data:
            self._end(None)
            return
        if self._partial:
            data = self._partial + data
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        if cut:
            self._dispatch(data[:cut].split(b"\n")[:-1])
        if len(self._partial) > MAX_LINE:
            self._partial = b""  # not a line to hand over
            self._end(LineTooLong(f"an exabgp line longer than {MAX_LINE} bytes"))

    def _dispatch(self, lines: list[bytes]) -> None:
        on_line = self._on_line
        for line in lines:
            if self.closed:
                return
            on_line(line.decode("utf-8", "replace") + "\n")

    def _end(self, error: Exception | None) -> None:
        if self.closed:
            return
        partial, self._partial = self._partial, b""
        if partial:
            self._on_line(partial.decode("utf-8", "replace"))  # may close the pipes: on_close still follows
        self.close()
        self._on_close(error)

    # --- commands ----------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Command bytes written here that the pipe has not taken yet."""
        return len(self._out)

    def write(self, data: bytes) -> None:
        """Queue `data` on the command pipe, writing at once what the pipe accepts. Never blocks."""
        if self.closed or not data:
            return
        if not self._out:
            try:
                done = os.write(self.commands_fd, data)
            except (BlockingIOError, InterruptedError):
                done = 0
            except OSError:  # EPIPE: ExaBGP is gone; its end of file on the event pipe follows
                return
            if done == len(data):
                return
            data = data[done:]
        self._out += data
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self.commands_fd, self._writable)

    def _writable(self) -> None:
        try:
            done = os.write(self.commands_fd, self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            done = len(self._out)  # EPIPE: nobody reads them any more
        del self._out[:done]
        if not self._out:
            self._loop.remove_writer(self.commands_fd)
            self._writing = False

    # --- end ---------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop reading and writing and close both pipes (buffered commands are dropped). Idempotent."""
        if self.closed:
            return
        self.closed = True
        if not self._loop.is_closed():
            self._loop.remove_reader(self.events_fd)
            if self._writing:
                self._loop.remove_writer(self.commands_fd)
        self._writing = False
        self._out.clear()
        for fd in (self.events_fd, self.commands_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
