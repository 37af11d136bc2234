"""Read-only views of a running daemon, as plain JSON-able data: the one place that defines what
`bgpctl show ...` and the health probes report (the metrics collector reads the same state).

Every function takes a `Daemon` (what the composition root, `bgpd.daemon`, hands over: the engine, the
ExaBGP child's state, the kernel writer's counters) and returns dicts/lists of str/int/float/bool/None,
never live objects. `family` (4, 6 or None for both) filters routes the way `bgpctl -4/-6` asks.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from importlib import metadata
from ipaddress import ip_network
from typing import Any, Protocol

from bgpd import __version__
from bgpd.config import dump as config_dump
from bgpd.engine import Engine, PeerStatus
from bgpd.exabgp.supervisor import RESTART_REASONS
from bgpd.model import REPAIR_CAUSES, Path, Prefix
from bgpd.prefix import bits as prefix_bits
from bgpd.prefix import host_key
from bgpd.rib.decision import local_pref


class Flag(Protocol):
    def is_set(self) -> bool: ...


class ExaBGPState(Protocol):
    """What the views read of the ExaBGP child (`bgpd.exabgp.supervisor.ExaBGP`)."""

    @property
    def pid(self) -> int | None: ...
    @property
    def alive(self) -> bool: ...
    @property
    def restarts(self) -> int: ...
    @property
    def restart_reasons(self) -> Counter[str]: ...
    @property
    def connected(self) -> Flag: ...


class WriterState(Protocol):
    """The kernel writer's counters (`bgpd.kernel.RouteInstaller`)."""

    errors: int
    retried: int


class DatastoreState(Protocol):
    """What the views read of the datastore (`bgpd.datastore.follow.DatastoreStatus`)."""

    up: bool
    reason: str
    since: float
    revision: int
    applied_revision: int
    resyncs: int
    problems: tuple[str, ...]
    error: str

    def as_dict(self) -> dict[str, object]: ...


class Daemon(Protocol):
    """Everything the views read."""

    @property
    def engine(self) -> Engine: ...
    @property
    def started(self) -> float: ...
    @property
    def commands_sent(self) -> Counter[str]: ...
    @property
    def exabgp_state(self) -> ExaBGPState: ...
    @property
    def writer_state(self) -> WriterState | None: ...
    @property
    def datastore_state(self) -> DatastoreState | None:
        """None when the config file is the whole configuration."""
        ...


def _family_name(version: int) -> str:
    return f"ipv{version}"


class UnknownPrefix(LookupError):
    pass


def exabgp_version() -> str:
    try:
        return metadata.version("exabgp")
    except metadata.PackageNotFoundError:
        return "unknown"


def role(d: Daemon) -> str:
    return "reflector" if d.engine.cluster_id is not None else "host"


def advertised(d: Daemon, status: PeerStatus) -> int:
    """Prefixes bgpd has handed to ExaBGP for this peer: its own exports of the session's family that its
    export filters let through, plus what it sends on to it (reflected or re-advertised)."""
    return d.engine.exported_to(status.address)[0] + d.engine.adjout.count(status.address)


def peer(d: Daemon, status: PeerStatus) -> dict[str, Any]:
    """One session. Beside its state and counters: `prefixes`, what it announces now before import policy
    (what `max_prefixes` is checked against); `max_prefixes`, `max_prefixes_action` and `restart_after`
    (None without a limit); `max_prefixes_hits`, how often it went above its limit; `held_until`, the end
    (epoch seconds) of its hold-down after a maximum-prefixes reset (state "held-down"), else None;
    `reason`, why it is not Established (held down, or "cannot be established: ..." past its deadline),
    else None; `last_error`, its last NOTIFICATION or failed connection (kept once Established again)."""
    up = status.state == "up"
    kind = "rr-client" if status.rr_client else ("mesh" if status.address in d.engine.mesh_nodes else "peer")
    limit = status.prefix_limit
    return {
        "address": str(status.address),
        "afi": _family_name(status.family),
        "asn": status.asn,
        "type": kind,
        "state": status.state,
        "since": status.since,
        "uptime_seconds": round(time.time() - status.since, 3) if up else 0.0,
        "router_id": str(status.router_id) if status.router_id else None,
        "received": status.received,
        "accepted": status.accepted,
        "rejected": dict(status.rejected),
        "advertised": advertised(d, status),
        "export_filtered": d.engine.exported_to(status.address)[1],
        "updates_received": status.updates_in,
        "flaps": status.flaps,
        "end_of_rib": status.eor,
        "graceful_restart_time": status.restart_time,
        "stale_routes": d.engine.stale_count(status.address),
        "prefixes": d.engine.prefix_count(status.address),
        "max_prefixes": limit.maximum if limit is not None else None,
        "max_prefixes_action": limit.action if limit is not None else None,
        "restart_after": limit.restart_after if limit is not None and limit.action == "restart" else None,
        "max_prefixes_hits": status.limit_hits,
        "held_until": status.held_until,
        "reason": status.reason,
        "last_error": status.last_error,
    }


def peers(d: Daemon) -> list[dict[str, Any]]:
    return [peer(d, s) for s in d.engine.peers.values()]


def _path(p: Path, best: bool, ecmp: bool) -> dict[str, Any]:
    a = p.attrs
    return {
        "from": str(p.peer.address),
        "next_hop": str(p.next_hop),
        "best": best,
        "ecmp": ecmp,
        "local_pref": local_pref(p),
        "as_path": list(a.as_path),
        "origin": a.origin.name.lower(),
        "med": a.med,
        "communities": list(a.communities),
        "large_communities": list(a.large_communities),
        "ebgp": p.peer.ebgp,
        "originator_id": str(a.originator_id) if a.originator_id else None,
        "cluster_list": [str(c) for c in a.cluster_list],
    }


def route(d: Daemon, prefix: Prefix) -> dict[str, Any]:
    selection = d.engine.rib.selection(prefix)
    paths = []
    for p in sorted(d.engine.rib.paths(prefix), key=lambda x: (x.peer.address.version, int(x.peer.address))):
        best = selection is not None and p == selection.best
        ecmp = selection is not None and p in selection.paths
        paths.append(_path(p, best, ecmp))
    installed = d.engine.fib.installed.get(prefix)
    return {
        "prefix": str(prefix),
        "afi": _family_name(prefix.version),
        "local": d.engine.export.is_announced(prefix),
        "paths": paths,
        "installed": [str(h) for h in installed] if installed is not None else None,
        "not_installed_because": _why_not_installed(d, prefix) if selection is not None else None,
        "collision": prefix in d.engine.fib.collisions,
        "suppressed": d.engine.rib.is_suppressed(prefix),
    }


def _why_not_installed(d: Daemon, prefix: Prefix) -> str | None:
    """Why a selected route is not (or not as wanted) in the kernel, None if it is."""
    engine = d.engine
    fib = engine.fib
    if not engine.cfg.kernel.install:
        return "kernel.install is off"
    if prefix in fib.collisions:
        return "a foreign kernel route holds the prefix"
    if engine.tunnel.mode(prefix) == "vxlan":
        return "VXLAN pool: Felix programs its routes"
    want = fib.wanted.get(prefix)
    if want is None or fib.installed.get(prefix) == want:
        return None
    device = fib.waiting.get(prefix)
    if device is not None:
        return f"waiting for device {device} (missing or down)"
    if prefix in fib.retry_pending:
        return f"the kernel refused it: {fib.refusals.get(prefix, 'no reason given')}; retried"
    return "write in flight"


def _of(family: int | None, prefix: Prefix) -> bool:
    return family is None or prefix.version == family


def routes(d: Daemon, prefix: str | None = None, family: int | None = None) -> list[dict[str, Any]]:
    """Every prefix learned or announced (IPv4 first), or the one `prefix`; `family` 4 or 6 filters."""
    engine = d.engine
    if prefix is not None:
        try:
            net = ip_network(prefix)
        except ValueError as exc:
            raise UnknownPrefix(f"invalid prefix {prefix!r}") from exc
        if family is not None and net.version != family:
            raise UnknownPrefix(f"{net} is an IPv{net.version} prefix, not IPv{family}")
        if not engine.rib.paths(net) and not engine.export.is_announced(net):
            raise UnknownPrefix(f"unknown prefix {net}")
        return [route(d, net)]
    every = {p for p in engine.rib.prefixes() if _of(family, p)}
    every |= {p for p in engine.export.announced if _of(family, p)}
    return [route(d, p) for p in sorted(every, key=prefix_bits)]


def kernel(d: Daemon, family: int | None = None) -> dict[str, Any]:
    """bgpd's routes in the kernel and what it exports from there; `family` 4 or 6 filters the lists."""
    engine = d.engine
    cfg = engine.cfg.kernel
    fib = engine.fib

    def listed(prefixes: Iterable[Prefix]) -> list[str]:
        return [str(p) for p in sorted((p for p in prefixes if _of(family, p)), key=prefix_bits)]

    return {
        "table": cfg.table,
        "protocol": cfg.protocol,
        "install": cfg.install,
        "owned": [
            {"prefix": str(p), "next_hops": [str(h) for h in hops]}
            for p, hops in sorted(fib.installed.items(), key=lambda i: prefix_bits(i[0]))
            if _of(family, p)
        ],
        "selected_for_export": [
            {"prefix": str(r.prefix), "kind": r.kind, "protocol": r.protocol, "device": r.ifname}
            for r in sorted(engine.export.selected(), key=lambda r: (prefix_bits(r.prefix), r.priority))
            if _of(family, r.prefix)
        ],
        "announced": listed(engine.export.announced),
        "collisions": listed(fib.collisions),
        "stale_from_earlier_run": listed(fib.stale_kernel),
        "reconciled": fib.reconciled,
        # wanted, but the kernel does not hold it (yet): a change in flight or waiting for its retry
        "not_installed": [
            {"prefix": str(p), "next_hops": [str(h) for h in hops], "reason": _why_not_installed(d, p)}
            for p, hops in sorted(fib.wanted.items(), key=lambda i: prefix_bits(i[0]))
            if fib.installed.get(p) != hops and p not in fib.collisions and _of(family, p)
        ]
        if cfg.install
        else [],
        "waiting_for_device": fib.waiting_by_device(),
        "repairs": {cause: d.engine.fib.repairs[cause] for cause in REPAIR_CAUSES},
        "selection_deferral": {
            "done": d.engine.deferral.done,
            "how": d.engine.deferral.how,
            "waiting_for": [str(a) for a in sorted(d.engine.deferral.waiting, key=host_key)],
            # the removal of stale kernel routes also waits for restarting peers
            "stale_routes_wait_for": [str(a) for a in sorted(d.engine.stale_wait.waiting, key=host_key)],
        },
    }


def status(d: Daemon) -> dict[str, Any]:
    cfg = d.engine.cfg
    established = sum(1 for s in d.engine.peers.values() if s.state == "up")
    return {
        "version": __version__,
        "exabgp_version": exabgp_version(),
        "node": cfg.node.name,
        "router_id": str(cfg.node.router_id),
        "asn": cfg.node.asn,
        "role": role(d),
        "cluster_id": str(d.engine.cluster_id) if d.engine.cluster_id else None,
        "started": d.started,
        "uptime_seconds": round(time.time() - d.started, 3),
        "config": cfg.source,
        "exabgp": {
            "pid": d.exabgp_state.pid,
            "alive": d.exabgp_state.alive,
            "attached": d.exabgp_state.connected.is_set(),
            "restarts": d.exabgp_state.restarts,
            "restart_reasons": {r: d.exabgp_state.restart_reasons[r] for r in RESTART_REASONS},
        },
        "sessions": {"configured": len(d.engine.peers), "established": established},
        "routes": {
            "paths": len(d.engine.rib),
            "installed": len(d.engine.fib.installed),
            "announced": d.engine.export.announced_count,
            "families": [_family_name(f) for f in cfg.families],
        },
        "kernel": {
            "repairs": sum(d.engine.fib.repairs.values()),
            "audits": d.engine.counters["kernel_audits"],
            "resyncs": {r: d.engine.counters[f"kernel_resyncs_{r}"] for r in ("overflow", "link")},
        },
        "selection_deferral_done": d.engine.deferral.done,
        "reconciled": d.engine.fib.reconciled,
        "last_reload": d.engine.last_reload,
        "datastore": d.datastore_state.as_dict() if d.datastore_state is not None else None,
    }


def config(d: Daemon) -> dict[str, Any]:
    """The configuration in effect, normalized (`bgpd.config.dump`: every default filled in): the file's,
    or the one derived from the datastore (``from_datastore``), with the revision it came from."""
    ds = d.datastore_state
    return {
        "source": d.engine.cfg.source,
        "from_datastore": ds is not None,
        "revision": ds.applied_revision if ds is not None else None,
        "text": config_dump(d.engine.cfg),
    }


def live(d: Daemon) -> tuple[bool, str]:
    """Liveness: the daemon answers (this runs in its loop) and its ExaBGP child is alive and attached."""
    if not d.exabgp_state.alive:
        return False, "exabgp is not running"
    if not d.exabgp_state.connected.is_set():
        return False, "exabgp is not attached"
    return True, "ok"


def ready(d: Daemon) -> tuple[bool, str]:
    """Readiness, Calico's rule: within the start-up window every configured peer must be Established,
    afterwards at least one; no peers configured = ready. With a datastore, not ready while it is down
    (bgpd keeps routing on the last known state meanwhile: the reason says so)."""
    ds = d.datastore_state
    if ds is not None and not ds.up:
        since = time.strftime("%H:%M:%S", time.localtime(ds.since))
        return False, f"datastore down since {since}: {ds.reason}; routing on the last known state"
    total = len(d.engine.peers)
    if total == 0:
        return True, "no peers configured"
    up = sum(1 for s in d.engine.peers.values() if s.state == "up")
    in_window = time.time() - d.started < d.engine.cfg.health.startup_window
    if in_window and up < total:
        return False, f"{up}/{total} sessions established (start-up: all required)"
    if up == 0:
        return False, f"0/{total} sessions established"
    return True, f"{up}/{total} sessions established"
