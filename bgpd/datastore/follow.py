"""Following the cluster's datastore: the records as etcd holds them now, this node's configuration derived
from them, and every new derivation handed to the daemon's reload path.

`Records` keeps Calico's records by key, each parsed once when it arrives (a change costs the parse of
one record, not of the cluster). `Follower` runs the `DatastoreWatcher` (list, then watch; on a break
`Down`, backoff, a fresh list) and, after each burst of changes (coalesced for `DEBOUNCE` seconds, as
confd renders after a sync), derives this node's `Config` (`bgpd.datastore.derive`). The first
derivation is what `bgpd run` starts with (`Follower.first`); later ones go to the function given to
`Follower.attach` (the speaker's `apply`, the same path as a reload of the file: unchanged sessions are
not touched). A derivation equal to the one in effect applies nothing.

Nothing is withdrawn because the datastore is away: when etcd is unreachable or the watch breaks, the
last derivation stays in effect and `DatastoreStatus` says so (``up`` False, the reason, since when) for
`bgpctl show status`, the metrics and the readiness probe. A record that is invalid, or a part of the
derivation it produced, is left out and reported with its key (`DatastoreStatus.problems`, logged once);
the rest applies. When this node cannot be configured at all (its Node record deleted), the last
derivation stays in effect and the reason is reported.

Secrets (``secretKeyRef`` passwords) are read from ``datastore.secrets_dir``: ``<dir>/<name>/<key>``, the
layout of a Kubernetes Secret mounted as a volume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bgpd.config import ClusterFile, Config
from bgpd.datastore.derive import DeriveError, SecretLookup, derive
from bgpd.datastore.etcd import (
    Change,
    DatastoreEvent,
    DatastoreWatcher,
    Down,
    SessionFactory,
    Snapshot,
    connect_etcd,
)
from bgpd.datastore.resources import (
    KINDS,
    BGPConfiguration,
    BGPFilter,
    BGPPeer,
    IPPool,
    Node,
    Problem,
    Record,
    ResourceError,
    Resources,
    SecretRef,
    parse,
)

log = logging.getLogger(__name__)

DEBOUNCE = 0.05  # seconds: changes arriving within this time are applied together
Apply = Callable[[Config, str], dict[str, object]]


class Records:
    """Calico's records under ``prefix``, by key: the valid ones parsed, the invalid ones as `Problem`s.
    Keys of other kinds are ignored. Each put parses one record."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._records: dict[str, dict[str, Record]] = {kind: {} for kind in KINDS}
        self._problems: dict[str, tuple[Problem, ...]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._records.values())

    def replace(self, items: Mapping[str, bytes]) -> None:
        """A fresh list: everything known before is forgotten."""
        for kind in KINDS:
            self._records[kind].clear()
        self._problems.clear()
        for key, value in items.items():
            self.put(key, value)

    def put(self, key: str, value: bytes) -> None:
        kind, name = self._split(key)
        if kind is None:
            return
        self._records[kind].pop(name, None)
        self._problems.pop(key, None)
        try:  # a key of bgpd's kinds that is not <plural>/<name> is refused here, as `resources.load` does
            record, notes = parse(key, value, self.prefix)
        except ResourceError as exc:
            self._problems[key] = (Problem(exc.key, exc.message),)
            return
        self._records[kind][name] = record
        if notes:
            self._problems[key] = notes

    def delete(self, key: str) -> None:
        kind, name = self._split(key)
        if kind is None:
            return
        self._records[kind].pop(name, None)
        self._problems.pop(key, None)

    def _split(self, key: str) -> tuple[str | None, str]:
        if not key.startswith(self.prefix):
            return None, ""
        kind, _, name = key[len(self.prefix) :].partition("/")
        if kind not in self._records:
            return None, ""
        return kind, ("" if "/" in name else name)

    def resources(self) -> Resources:
        r = self._records

        def of(kind: str, cls: type[Any]) -> dict[str, Any]:
            return {n: v for n, v in r[kind].items() if isinstance(v, cls)}

        return Resources(
            nodes=of("nodes", Node),
            configurations=of("bgpconfigurations", BGPConfiguration),
            peers=of("bgppeers", BGPPeer),
            pools=of("ippools", IPPool),
            filters=of("bgpfilters", BGPFilter),
        )

    def problems(self) -> tuple[Problem, ...]:
        return tuple(p for key in sorted(self._problems) for p in self._problems[key])


def secrets_in(directory: str | None) -> SecretLookup:
    """A `SecretLookup` reading ``<directory>/<secret name>/<key>`` (one trailing newline dropped); None
    when there is no such file or no directory."""

    def lookup(ref: SecretRef) -> str | None:
        if directory is None or "/" in ref.name or "/" in ref.key or ref.name in ("", ".", ".."):
            return None
        try:
            with open(os.path.join(directory, ref.name, ref.key), encoding="utf-8") as fh:
                value = fh.read()
        except (OSError, UnicodeDecodeError):
            return None
        return value[:-1] if value.endswith("\n") else value

    return lookup


@dataclass
class DatastoreStatus:
    """What `bgpctl show status`, the metrics and the readiness probe say about the datastore.

    ``up``: the last list succeeded and the watch has not broken since. ``reason``: why it is down (""
    when up). ``since``: Unix time of the last change of ``up``. ``revision``: the etcd revision of the
    records held; ``applied_revision``: the one the configuration in effect was derived from. ``resyncs``:
    fresh lists after the first. ``problems``: invalid records and left-out parts, each naming its key.
    ``error``: why the latest records give no configuration for this node ("" when they do)."""

    type: str
    endpoints: tuple[str, ...]
    prefix: str
    up: bool = False
    reason: str = "not connected yet"
    since: float = field(default_factory=time.time)
    revision: int = 0
    applied_revision: int = 0
    resyncs: int = 0
    records: int = 0
    problems: tuple[str, ...] = ()
    error: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "type": self.type,
            "endpoints": list(self.endpoints),
            "prefix": self.prefix,
            "up": self.up,
            "reason": self.reason,
            "since": self.since,
            "revision": self.revision,
            "applied_revision": self.applied_revision,
            "resyncs": self.resyncs,
            "records": self.records,
            "problems": list(self.problems),
            "error": self.error,
        }


class Follower:
    """The datastore side of one bgpd (see the module docstring). ``connect`` defaults to etcd per
    ``file.datastore``; ``debounce`` in seconds."""

    def __init__(
        self, file: ClusterFile, connect: SessionFactory | None = None, debounce: float = DEBOUNCE
    ) -> None:
        etcd = file.datastore.etcd
        assert etcd is not None, "a ClusterFile always has its etcd settings"
        self.file = file
        self.status = DatastoreStatus(file.datastore.type, etcd.endpoints, etcd.prefix)
        self.records = Records(etcd.prefix)
        self._connect = connect if connect is not None else connect_etcd(etcd)
        self._watcher = DatastoreWatcher(self._connect, etcd.prefix)
        self._debounce = debounce
        self._dirty = asyncio.Event()
        self._first: asyncio.Future[Config] | None = None
        self._apply: Apply | None = None
        self._config: Config | None = None
        self._logged: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._lists = 0

    # ---- lifecycle

    def start(self) -> None:
        if self._tasks:
            return
        self._first = asyncio.get_running_loop().create_future()
        self._tasks = [
            asyncio.create_task(self._watcher.run(self._deliver), name="datastore-watch"),
            asyncio.create_task(self._derive_loop(), name="datastore-derive"),
        ]

    async def first(self) -> Config:
        """This node's first configuration, once the datastore has given one (waits as long as it takes,
        logging why; cancel to give up)."""
        self.start()
        assert self._first is not None
        return await asyncio.shield(self._first)

    def attach(self, apply: Apply) -> None:
        """From now on, hand every new derivation to ``apply(config, what)`` (the speaker's reload path)."""
        self._apply = apply
        self._dirty.set()  # changes that came while the daemon started

    def reread(self, file: ClusterFile) -> dict[str, object]:
        """The config file was reloaded with the same datastore: derive again with its local sections and
        apply at once. The result of the apply (``ok``, ``message``)."""
        self.file = file
        return self._derive_and_apply("config file reloaded") or {
            "ok": False,
            "message": f"nothing changed: {self.status.error}",
        }

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    # ---- the watcher's events

    async def _deliver(self, event: DatastoreEvent) -> None:
        st = self.status
        if isinstance(event, Snapshot):
            self._lists += 1
            if self._lists > 1:
                st.resyncs += 1
            self.records.replace(event.items)
            st.revision = event.revision
            if not st.up:
                log.info(
                    "datastore up",
                    extra={"kv": {"revision": event.revision, "records": len(self.records)}},
                )
                st.up, st.reason, st.since = True, "", time.time()
        elif isinstance(event, Change):
            if event.kind == "put" and event.value is not None:
                self.records.put(event.key, event.value)
            else:
                self.records.delete(event.key)
            st.revision = max(st.revision, event.revision)
        elif isinstance(event, Down):
            if st.up or st.reason != event.reason:
                st.since = time.time() if st.up else st.since
            st.up, st.reason = False, event.reason
            return
        st.records = len(self.records)
        self._dirty.set()

    async def _derive_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self._debounce)  # let a burst of changes arrive
            self._dirty.clear()
            if self._first is not None and not self._first.done():
                config = self._derive()
                if config is not None:
                    self._config = config
                    self.status.applied_revision = self.status.revision
                    self._first.set_result(config)
            elif self._apply is not None:
                self._derive_and_apply(f"datastore revision {self.status.revision}")

    # ---- deriving

    def _derive(self) -> Config | None:
        st = self.status
        try:
            derived = derive(
                self.records.resources(),
                self.file.node_name,
                self.file.local,
                secrets_in(self.file.datastore.secrets_dir),
                self.file.source,
            )
        except DeriveError as exc:
            message = str(exc)
            if message != st.error:
                log.error(
                    "no configuration for this node from the datastore; the last one stays in effect"
                    if self._config is not None
                    else "waiting for this node's configuration in the datastore",
                    extra={"kv": {"reason": message, "revision": st.revision}},
                )
            st.error = message
            return None
        st.error = ""
        problems = [*self.records.problems(), *derived.problems]
        st.problems = tuple(str(p) for p in problems)
        for p in problems:
            text = str(p)
            if text not in self._logged:
                log.warning("datastore record left out or ignored", extra={"kv": {"problem": text}})
        self._logged = set(st.problems)
        return derived.config

    def _derive_and_apply(self, what: str) -> dict[str, object] | None:
        config = self._derive()
        if config is None or self._apply is None:
            return None
        if config == self._config:
            self.status.applied_revision = self.status.revision
            return {"ok": True, "message": f"{what}: no change for this node"}
        result = self._apply(config, what)
        if result.get("ok"):
            self._config = config
            self.status.applied_revision = self.status.revision
        return result
