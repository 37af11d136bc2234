"""The composition root: builds the running daemon from a config and hands each part what it reads.

`Daemon` owns the pieces and their start/stop order: the I/O shell with the route decision engine inside
(`bgpd.speaker.Speaker`), the control socket (`bgpd.control`) and the metrics/health endpoint
(`bgpd.metrics`). The views, the control socket and the metrics read the daemon through `views.Daemon`
(the engine, ExaBGP's state, the kernel writer's counters): none of them imports the speaker, and the
speaker imports none of them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from ipaddress import IPv4Network

from bgpd.config import Config
from bgpd.control import ControlServer
from bgpd.engine import Engine
from bgpd.metrics import HttpEndpoint, registry_for
from bgpd.speaker import Speaker
from bgpd.views import ExaBGPState, WriterState


class Daemon:
    """One bgpd: host speaker or reflector (`views.Daemon` for what the views read)."""

    def __init__(self, cfg: Config, node_interface: tuple[str, IPv4Network] | None = None) -> None:
        """`node_interface`: (name, network) of the interface that holds node.address, if the caller
        looked it up already (`bgpd run` does, to refuse a start without one)."""
        self.cfg = cfg
        self.registry, latency = registry_for(self)
        self.speaker = Speaker(cfg, latency, node_interface)
        self.control = ControlServer(self, cfg.control_socket, self.speaker.reload)
        self.http = (
            HttpEndpoint(self, self.registry, *cfg.metrics.listen) if cfg.metrics.listen is not None else None
        )

    # what the views read
    @property
    def engine(self) -> Engine:
        return self.speaker.engine

    @property
    def started(self) -> float:
        return self.speaker.started

    @property
    def commands_sent(self) -> Counter[str]:
        return self.speaker.commands_sent

    @property
    def exabgp_state(self) -> ExaBGPState:
        return self.speaker.exabgp

    @property
    def writer_state(self) -> WriterState | None:
        return self.speaker.installer

    async def reload(self) -> dict[str, object]:
        return await self.speaker.reload()

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then stop ExaBGP (sessions close) and keep installed routes (persist)."""
        await self.control.start()
        started = False
        try:
            if self.http is not None:
                await self.http.start()
            started = True  # from here the speaker may hold ExaBGP and the kernel's routes: close it
            await self.speaker.start()
            await stop.wait()
        finally:
            await self.control.close()
            if self.http is not None:
                await self.http.close()
            if started:
                await self.speaker.close()
