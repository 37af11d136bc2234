"""Runs ExaBGP as bgpd's child: writes its config, starts it, restarts it when it dies, moves API lines.

The channel: bgpd listens on a unix socket in its runtime directory; ExaBGP's helper (`bgpd.exabgp.bridge`)
connects to it and hands over ExaBGP's API pipes, which bgpd then reads and writes directly from its event
loop (`bgpd.exabgp.pipes`: each event line is handled as the loop reads it). `on_connect`
fires when a (new) ExaBGP is attached - the owner then replays its whole announced table, since a new
ExaBGP starts empty. `on_disconnect` fires when it goes away: every session of
that ExaBGP is down. The kernel keeps installed routes meanwhile; bgpd's owner decides what to do with them.

ExaBGP gets PR_SET_PDEATHSIG=SIGKILL so it never outlives bgpd, and runs in its own process group so a
terminal's ^C reaches bgpd only (bgpd stops it in order, with SIGTERM). A bgpd that dies (`kill -9`, a
crash) takes ExaBGP with it at once, also an ExaBGP that is stopped (SIGSTOP) or stuck in a loop: a
SIGTERM would stay pending on the one and only ask the other's reactor to shut down, and the survivor
would hold the BGP port against the ExaBGP of the restarted bgpd. Its peers see the TCP connections close
without a NOTIFICATION and keep this host's routes as graceful restart helpers (RFC 4724 §4.2) until the
restarted bgpd has re-sent them.

A child that runs but does not answer is not alive: while attached, the API channel is probed
(`bgpd.exabgp.liveness`: a `version` command every 2 s; any line from ExaBGP and any command bytes it
reads count as progress). An ExaBGP whose channel makes no progress for `liveness.HUNG_AFTER` seconds after
a probe is killed (SIGKILL, by pid) and restarted like one that exited (the owner replays its table to
the new one); one error line says so with how long it was silent, and `restart_reasons["hung"]` counts
it beside `restart_reasons["exited"]` (`restarts` counts both). `liveness` is the attached ExaBGP's state,
with the slowest probe answer seen.

Next to ExaBGP's config, the keepalive file (`confgen.render_keepalives`, named to ExaBGP once, in
`launch.KEEPALIVE_ENV`) carries the sessions' keepalive times, which ExaBGP's config cannot: both are
written at start and at every reload, the keepalive file first, so whatever ExaBGP builds afterwards (a
session's keepalive timer, a restarted ExaBGP) reads the current one. A reload that changes it sends
`launch.KEEPALIVE_SIGNAL`: running sessions get their new interval at once, without a reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import socket
import sys
import termios
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from bgpd.exabgp import bridge, confgen, liveness
from bgpd.exabgp.launch import KEEPALIVE_ENV, KEEPALIVE_SIGNAL
from bgpd.exabgp.pipes import Pipes

log = logging.getLogger("bgpd.exabgp")

PR_SET_PDEATHSIG = 1
F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ, named in the fcntl module only from Python 3.10 on Linux
PIPE_SIZE = 1 << 20


RESTART_REASONS = ("exited", "hung")  # why ExaBGP was restarted: it died by itself, or bgpd killed it (hung)
RESTART_BACKOFF = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER = 60.0  # seconds of uptime after which the backoff starts again from the beginning


def _child_setup() -> None:  # runs in the forked child before exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setpgid(0, 0)


def _in_pipe(fd: int) -> int | None:
    """Bytes waiting in the pipe that `fd` is either end of (FIONREAD); None if it cannot be asked."""
    try:
        count = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return None
    return int.from_bytes(count, sys.byteorder)


def _unread(fd: int) -> bool:
    """Are bytes waiting in pipe `fd`? False if it cannot be asked."""
    return bool(_in_pipe(fd))


def _replace(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file: a reader sees the old content or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


class ExaBGP:
    """One supervised ExaBGP process and its API channel."""

    def __init__(
        self,
        runtime_dir: str,
        speaker: confgen.Speaker,
        sessions: Sequence[confgen.Session],
        on_line: Callable[[str], None],
        on_connect: Callable[[], None],
        on_disconnect: Callable[[], None],
        log_level: str = "INFO",
        name: str = "exabgp",
    ) -> None:
        self.dir = Path(runtime_dir)
        self.speaker = speaker
        self.sessions = tuple(sessions)
        self._on_line = on_line
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self.log_level = log_level
        self.name = name
        self.config_path = self.dir / f"{name}.conf"
        self.keepalive_path = self.dir / f"{name}.keepalive.json"
        self._keepalives = ""  # the keepalive file's text as last written
        self.socket_path = self.dir / f"{name}.sock"
        self.log_path = self.dir / f"{name}.log"
        self.pid_path = self.dir / f"{name}.pid"
        self.restarts = 0
        self.restart_reasons: Counter[str] = Counter()  # "exited" (died by itself), "hung" (we killed it)
        self.liveness: liveness.Liveness | None = None  # of the attached ExaBGP
        self._hung_pid: int | None = None  # the ExaBGP killed for not answering
        self._written = 0  # command bytes written to the attached ExaBGP
        self._process: asyncio.subprocess.Process | None = None
        self._listener: socket.socket | None = None
        self._accept_task: asyncio.Task[None] | None = None
        self._writer: Pipes | None = None  # the attached ExaBGP's pipes
        self._watching: asyncio.Task[None] | None = None  # its liveness probe
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.connected = asyncio.Event()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def write_config(self) -> bool:
        """Write the keepalive file, then ExaBGP's config (each replaced whole); True if the keepalive
        file's content changed."""
        self.dir.mkdir(parents=True, exist_ok=True)
        keepalives = confgen.render_keepalives(self.sessions)
        text = confgen.render(self.speaker, self.sessions, str(self.socket_path))
        _replace(self.keepalive_path, keepalives)
        _replace(self.config_path, text)
        changed, self._keepalives = keepalives != self._keepalives, keepalives
        return changed

    async def start(self) -> None:
        self.write_config()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        listener.listen(4)
        listener.setblocking(False)
        self._listener = listener
        self._accept_task = asyncio.create_task(self._accept_pipes(), name=f"{self.name}-accept")
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-supervisor")

    async def _accept_pipes(self) -> None:
        """Take ExaBGP's API pipes from the helper (see bridge.py), one ExaBGP at a time."""
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            conn, _ = await loop.sock_accept(self._listener)
            try:
                conn.settimeout(5.0)
                hello, fds, _, _ = await loop.run_in_executor(None, socket.recv_fds, conn, 64, 2)
            except OSError as exc:
                log.warning("exabgp helper handshake failed", extra={"kv": {"error": str(exc)}})
                continue
            finally:
                conn.close()
            if hello != bridge.HELLO or len(fds) != 2:
                for fd in fds:
                    os.close(fd)
                log.warning("unexpected exabgp helper handshake", extra={"kv": {"hello": hello[:40]}})
                continue
            events_fd, commands_fd = fds
            with contextlib.suppress(OSError):  # room for bursts of events while bgpd is busy
                fcntl.fcntl(events_fd, F_SETPIPE_SZ, PIPE_SIZE)
                fcntl.fcntl(commands_fd, F_SETPIPE_SZ, PIPE_SIZE)
            try:
                self._attach(loop, events_fd, commands_fd)
            except Exception as exc:  # a bug attaching one ExaBGP must not keep the next from attaching
                log.exception("error attaching exabgp", extra={"kv": {"instance": self.name}})
                writer = self._writer
                if writer is not None and writer.events_fd == events_fd:
                    with contextlib.suppress(Exception):  # its pipes close: ExaBGP exits, `_run` restarts it
                        self._detach(writer, exc)
                else:
                    for fd in fds:
                        with contextlib.suppress(OSError):
                            os.close(fd)

    def _attach(self, loop: asyncio.AbstractEventLoop, events_fd: int, commands_fd: int) -> None:
        """A (new) ExaBGP's pipes: read its events from the loop, probe it, tell the owner."""
        if self._writer is not None:  # a newer ExaBGP replaces an older one
            self._detach(self._writer, None)
        self.liveness = alive = liveness.Liveness(loop.time())

        def on_line(text: str) -> None:
            if alive.heard(loop.time(), text) is not None:
                return  # the answer to a probe (its round trip is in `liveness`): not the owner's
            try:
                self._on_line(text)
            except Exception:  # a bug handling one event must not detach ExaBGP
                log.exception("error handling an exabgp event", extra={"kv": {"instance": self.name}})

        pipes = Pipes(loop, events_fd, commands_fd, on_line, lambda error: self._detach(pipes, error))
        self._writer = pipes
        self._written = 0
        self.connected.set()
        self._watching = asyncio.create_task(
            self._watch(alive, pipes, self.pid), name=f"{self.name}-liveness"
        )
        log.info("exabgp attached", extra={"kv": {"instance": self.name, "pid": self.pid}})
        self._on_connect()

    def _detach(self, pipes: Pipes, error: Exception | None) -> None:
        """The event pipe of `pipes` ended (`error`: why, None for end of file), or a newer ExaBGP came."""
        if error is not None:
            log.warning("exabgp channel error", extra={"kv": {"instance": self.name, "error": str(error)}})
        pipes.close()
        if self._writer is pipes:
            self._writer = None
            if self._watching is not None:
                self._watching.cancel()
                self._watching = None
            self.connected.clear()
            self._on_disconnect()

    async def _watch(self, alive: liveness.Liveness, pipes: Pipes, pid: int | None) -> None:
        """Probe the ExaBGP attached through `pipes` (process `pid`) until it detaches; kill it if hung.
        What it read of the commands is what bgpd wrote less what still waits (in the pipe, in `pipes`'
        buffer)."""
        loop = asyncio.get_running_loop()
        probe = f"{liveness.PROBE_COMMAND}\n".encode()
        while self._writer is pipes:
            now = loop.time()
            queued = _in_pipe(pipes.commands_fd)
            if queued is not None:
                alive.consumed(self._written - queued - pipes.pending)
            verdict = alive.hung(now, _unread(pipes.events_fd))
            if verdict is not None:
                self._kill_hung(verdict, pid)
                return
            if alive.probe_due(now):
                self._write(pipes, probe)
                alive.probe_sent(now)
            await asyncio.sleep(liveness.CHECK_INTERVAL)

    def _write(self, pipes: Pipes, data: bytes) -> None:
        pipes.write(data)
        self._written += len(data)

    def _kill_hung(self, verdict: liveness.Hung, pid: int | None) -> None:
        """SIGKILL the hung ExaBGP (if it is still the current child); `_run` restarts it."""
        proc = self._process
        if proc is None or proc.pid != pid or proc.returncode is not None:
            return
        log.error(
            "exabgp hung: no progress on its API channel; killing it",
            extra={
                "kv": {
                    "instance": self.name,
                    "pid": pid,
                    "silent_s": round(verdict.silent, 1),
                    "probe_unanswered_s": round(verdict.probe_waited, 1),
                }
            },
        )
        self._hung_pid = pid
        proc.kill()

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            env = dict(os.environ)
            env.update(confgen.environment(self.speaker, self.log_level))
            env[KEEPALIVE_ENV] = str(self.keepalive_path)
            logfile = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
            try:
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "bgpd.exabgp.launch",  # ExaBGP with the reactor changes described in launch.py
                    "server",
                    str(self.config_path),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=logfile,
                    stderr=asyncio.subprocess.STDOUT,
                    env=env,
                    preexec_fn=_child_setup,
                )
            finally:
                logfile.close()
            started = asyncio.get_running_loop().time()
            self.pid_path.write_text(f"{self._process.pid}\n")
            log.info("exabgp started", extra={"kv": {"instance": self.name, "pid": self._process.pid}})
            code = await self._process.wait()
            if self._stopping:
                return
            self.restarts += 1
            reason = "hung" if self._hung_pid == self._process.pid else "exited"
            self.restart_reasons[reason] += 1
            uptime = asyncio.get_running_loop().time() - started
            attempt = 0 if uptime > STABLE_AFTER else attempt + 1
            delay = RESTART_BACKOFF[min(attempt, len(RESTART_BACKOFF) - 1)]
            log.error(
                "exabgp exited; restarting",
                extra={
                    "kv": {
                        "instance": self.name,
                        "code": code,
                        "reason": reason,
                        "log": str(self.log_path),
                        "in": delay,
                    }
                },
            )
            await asyncio.sleep(delay)

    def send(self, lines: Sequence[str]) -> bool:
        """Queue command lines for ExaBGP. False if no ExaBGP is attached (the caller replays on connect)."""
        if self._writer is None or not lines:
            return self._writer is not None
        self._write(self._writer, ("\n".join(lines) + "\n").encode())
        return True

    def reload(self, sessions: Sequence[confgen.Session], reconfigure: bool = True) -> None:
        """New sessions: rewrite both files. `reconfigure` (the neighbor set changed): ask ExaBGP to reload
        its config (SIGUSR1; unchanged sessions stay up). A changed keepalive file: ask ExaBGP to read it
        again (KEEPALIVE_SIGNAL; no session is touched)."""
        self.sessions = tuple(sessions)
        keepalives_changed = self.write_config()
        if self.alive and self._process is not None:
            if reconfigure:
                self._process.send_signal(signal.SIGUSR1)
            if keepalives_changed:
                self._process.send_signal(KEEPALIVE_SIGNAL)

    def kill(self) -> None:
        """Kill the current ExaBGP (tests and `bgpctl` use this to exercise the restart path)."""
        if self.alive and self._process is not None:
            self._process.kill()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop reading events first (ExaBGP's goodbye "down" events must not withdraw anything: the kernel
        keeps the routes while bgpd is stopped), then stop ExaBGP."""
        self._stopping = True
        for task in (self._accept_task, self._watching):
            if task is not None:
                task.cancel()
        if self._writer is not None:
            self._writer.close()  # no on_close: the owner is not told (see above)
            self._writer = None
        self.connected.clear()
        proc = self._process
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._listener is not None:
            self._listener.close()
        for path in (self.socket_path, self.pid_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
