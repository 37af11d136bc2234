"""The composition root: builds the running daemon from a config and hands each part what it reads.

`Daemon` owns the pieces and their start/stop order: the I/O shell with the route decision engine inside
(`bgpd.speaker.Speaker`), the control socket (`bgpd.control`), the metrics/health endpoint
(`bgpd.metrics`) and, when the cluster part of the config comes from the datastore, the
`bgpd.datastore.follow.Follower` whose derivations it applies through the speaker's reload path. The
views, the control socket and the metrics read the daemon through `views.Daemon` (the engine, ExaBGP's
state, the kernel writer's counters, the datastore's status): none of them imports the speaker, and the
speaker imports none of them.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from ipaddress import IPv4Network
from typing import TYPE_CHECKING

from bgpd import config as config_mod
from bgpd.config import ClusterFile, Config
from bgpd.control import ControlServer
from bgpd.engine import Engine
from bgpd.metrics import HttpEndpoint, registry_for
from bgpd.speaker import Speaker

if TYPE_CHECKING:
    from bgpd.datastore.follow import DatastoreStatus, Follower
from bgpd.views import ExaBGPState, WriterState


class Daemon:
    """One bgpd: host speaker or reflector (`views.Daemon` for what the views read)."""

    def __init__(
        self,
        cfg: Config,
        node_interface: tuple[str, IPv4Network] | None = None,
        follower: Follower | None = None,
    ) -> None:
        """`node_interface`: (name, network) of the interface that holds node.address, if the caller
        looked it up already (`bgpd run` does, to refuse a start without one). `follower`: the datastore
        that `cfg` was derived from (its later derivations are applied once the speaker runs)."""
        self.cfg = cfg
        self.follower = follower
        self.registry, latency = registry_for(self)
        self.speaker = Speaker(cfg, latency, node_interface)
        self.control = ControlServer(self, cfg.control_socket, self.reload)
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

    @property
    def datastore_state(self) -> DatastoreStatus | None:
        return self.follower.status if self.follower is not None else None

    async def reload(self) -> dict[str, object]:
        """Re-read the config file and apply it (SIGHUP, `bgpctl reload`). With a datastore, the file's
        local sections are applied with the cluster's latest derivation; its datastore section itself
        cannot change without a restart."""
        if self.follower is None:
            return await self.speaker.reload()
        try:
            loaded = config_mod.load_file(self.cfg.source)
        except config_mod.ConfigError as exc:
            return self.speaker.refuse(f"invalid config, nothing changed: {exc}")
        if not isinstance(loaded, ClusterFile) or loaded.datastore != self.follower.file.datastore:
            return self.speaker.refuse("datastore changed: restart bgpd to apply; nothing changed")
        if loaded.node_name != self.follower.file.node_name:
            return self.speaker.refuse("node changed: restart bgpd to apply; nothing changed")
        return self.follower.reread(loaded)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until `stop` is set; then stop ExaBGP (sessions close) and keep installed routes (persist)."""
        await self.control.start()
        started = False
        try:
            if self.http is not None:
                await self.http.start()
            started = True  # from here the speaker may hold ExaBGP and the kernel's routes: close it
            await self.speaker.start()
            if self.follower is not None:
                self.follower.attach(self.speaker.apply)
            await stop.wait()
        finally:
            await self.control.close()
            if self.http is not None:
                await self.http.close()
            if self.follower is not None:
                await self.follower.close()
            if started:
                await self.speaker.close()
