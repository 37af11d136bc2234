"""The control socket: a unix stream socket (mode 0600, root only) that `bgpctl` talks to.

Protocol: the client sends one JSON object on one line, `{"command": NAME, "args": {...}}`; the daemon
answers one line, `{"ok": true, "result": ...}` or `{"ok": false, "error": "one clear sentence"}`, and
closes. Commands: status, peers, routes (args: prefix, family 4|6), kernel (args: family), config, live,
ready, reload. The daemon's state is read through `views` (what `bgpd.daemon` hands over).

Every request gets an answer: a bad argument or an unknown prefix is its one sentence; a command that fails
by a bug in bgpd is logged with its traceback (level error, `command=`) and answered "internal error ...
see bgpd's log", and the daemon goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bgpd import views

log = logging.getLogger("bgpd.control")

MAX_REQUEST = 1 << 16


class BadArgument(ValueError):
    pass


def _family(args: dict[str, Any]) -> int | None:
    """The `family` argument: 4, 6, or absent (both)."""
    family = args.get("family")
    if family is None:
        return None
    if family not in (4, 6):
        raise BadArgument(f"family must be 4 or 6, not {family!r}")
    return int(family)


class ControlServer:
    def __init__(
        self, daemon: views.Daemon, path: str, reload: Callable[[], Awaitable[dict[str, object]]]
    ) -> None:
        self.daemon = daemon
        self.reload = reload
        self.path = Path(path)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        old = os.umask(0o177)  # the socket is created 0600: root (the daemon's user) only
        try:
            self._server = await asyncio.start_unix_server(
                self._handle, path=str(self.path), limit=MAX_REQUEST
            )
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10.0)
            reply = await self.dispatch(line)
        except (TimeoutError, ValueError, ConnectionError) as exc:
            reply = {"ok": False, "error": f"bad request: {exc}"}
        try:
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            command = str(request["command"])
            args = dict(request.get("args") or {})
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": 'bad request: expected {"command": ..., "args": {...}}'}
        handler = self._handlers().get(command)
        if handler is None:
            return {"ok": False, "error": f"unknown command {command!r}"}
        try:
            return {"ok": True, "result": await handler(args)}
        except (views.UnknownPrefix, BadArgument) as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a bug: logged with its traceback; the client gets one line
            log.error("control command failed", exc_info=True, extra={"kv": {"command": command}})
            bug = f"internal error in bgpd answering {command!r} ({type(exc).__name__}); see its log"
            return {"ok": False, "error": bug}

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]:
        sp = self.daemon

        async def status(_: dict[str, Any]) -> Any:
            return views.status(sp)

        async def peers(_: dict[str, Any]) -> Any:
            return views.peers(sp)

        async def routes(args: dict[str, Any]) -> Any:
            prefix = args.get("prefix")
            return views.routes(sp, None if prefix is None else str(prefix), _family(args))

        async def kernel(args: dict[str, Any]) -> Any:
            return views.kernel(sp, _family(args))

        async def config(_: dict[str, Any]) -> Any:
            return views.config(sp)

        async def live(_: dict[str, Any]) -> Any:
            ok, reason = views.live(sp)
            return {"ok": ok, "reason": reason}

        async def ready(_: dict[str, Any]) -> Any:
            ok, reason = views.ready(sp)
            return {"ok": ok, "reason": reason}

        async def reload(_: dict[str, Any]) -> Any:
            return await self.reload()

        return {
            "status": status,
            "peers": peers,
            "routes": routes,
            "kernel": kernel,
            "config": config,
            "live": live,
            "ready": ready,
            "reload": reload,
        }
