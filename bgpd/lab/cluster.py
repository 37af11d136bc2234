"""A lab driven by etcd (issue 15): its etcd, its records, and hosts joining and leaving while it runs.

`start` (from `bgpd lab up --datastore etcd`): etcd in its own namespace (`<prefix>etcd`) with a leg on the
first rack's switch, at the first address of the first underlay subnet after the router that no node uses
(192.168.100.2 in the shipped topologies), data under the lab's state directory (`etcd/`), its pid in the
state file; then Calico's records for the topology (`bgpd.lab.records`), written through
`bgpd.lab.etcd.apply`. Each host's bgpd then gets a config with only `node.name`, the `datastore` section
and its local sections.

`add_host` (`bgpd lab add-host NAME`): the next free underlay address (after the highest node address), the
next free block of the pool (the size of the topology's first block, after the highest one in use) with
workloads from its third address on (`plan_host`); the host's namespaces, its Node record, its bgpd; then
the wait for every host to have every route and session. `remove_host`: that host's bgpd stopped by pid,
its Node record deleted, its namespaces removed, and the wait for the others to drop its routes and
session. Both record the change in the state file (`added`, `removed`) so every later command (`check`,
`routes`, `summary`, `down`) sees the lab as it is, and both verify that the sessions between the hosts
that did not change were not reset: each such session keeps its `since` and its `flaps` counter (bgpd's
`peers` view, over each host's control socket) across the change.

A one-segment mesh without IP-in-IP grows and shrinks; racks and tunnels only run `up` with etcd.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any

import yaml

from bgpd import ctl
from bgpd.lab import etcd, netns, records
from bgpd.lab.topology import ETCD, NAME, ROUTER, SWITCH, TOR, TRANSIT_SWITCH, LabHost, Topology
from bgpd.oneline import describe

if TYPE_CHECKING:
    from bgpd.lab.lab import Lab

STATE_KEY = "datastore"  # the state file's entry: type, endpoint, address, namespace, pid
ETCD_DIR = "etcd"  # under the state directory: etcd's data and log
DEFAULT_BLOCK = 26  # Calico's block size, when no host of the topology has a block
FIRST_WORKLOAD = 2  # a block's workloads start at its third address, as the shipped topologies'
DECONFIGURE_WAIT = 15.0  # seconds remove-host waits for the other hosts to drop a removed host


class ClusterError(RuntimeError):
    """A datastore-mode command that cannot run, or a step that failed: one line."""


@dataclass(frozen=True, slots=True)
class Change:
    """What `add_host` / `remove_host` did: the host, the sessions between the unchanged hosts that were
    checked, those reset meanwhile (one line each; empty when none), and the seconds it took."""

    host: LabHost
    kept: int
    resets: tuple[str, ...]
    seconds: float


# ------------------------------------------------------------------ etcd and the records


def etcd_address(topo: Topology) -> IPv4Address:
    """etcd's address: the first host address of the first underlay after the router that no node has."""
    subnet = topo.racks[0]
    taken = {n.address for n in topo.nodes} | {subnet.network_address + 1}
    for address in subnet.hosts():
        if address not in taken:
            return address
    raise ClusterError(f"no free address for etcd in {subnet}")


def start(lab: Lab) -> dict[str, Any]:
    """etcd for a lab whose namespaces are built, and the topology's records in it; returns the state
    entry (also saved in the state file before etcd starts, so `down` removes what a failure left)."""
    why = records.unsupported(lab.topo)
    if why:
        raise ClusterError(why)
    topo = lab.topo
    address = etcd_address(topo)
    ns = f"{lab.prefix}{ETCD}"
    entry: dict[str, Any] = {
        "type": "etcd",
        "endpoint": etcd.client_url(str(address)),
        "address": str(address),
        "namespace": ns,
        "prefix": records.DEFAULT_PREFIX,
        "pid": None,
    }
    lab.update_state(**{STATE_KEY: entry})
    fabric = netns.Fabric(lab.prefix)
    fabric.namespace(ETCD)
    sw = f"{lab.prefix}{SWITCH}0" if topo.routed or topo.tor is not None else lab.switch
    fabric.veth(ns, "eth0", sw, "petcd")
    netns.ip("link", "set", "petcd", "master", "br0", ns=sw)
    netns.ip("addr", "add", f"{address}/{topo.racks[0].prefixlen}", "dev", "eth0", ns=ns)
    netns.ip("route", "add", "default", "via", str(topo.racks[0].network_address + 1), ns=ns)
    directory = lab.state_dir / ETCD_DIR
    directory.mkdir(parents=True, exist_ok=True)
    entry["pid"] = etcd.start_detached(ns, str(address), directory / "data", directory / "etcd.log")
    lab.update_state(**{STATE_KEY: entry})
    write(lab, [("put", k, v) for k, v in records.cluster(topo)])
    return entry


def stop(lab: Lab) -> None:
    """End the lab's etcd by its recorded pid and remove its data (the namespace goes with the lab's)."""
    entry = datastore(lab)
    if entry is not None and isinstance(entry.get("pid"), int):
        etcd.stop(int(entry["pid"]))
    shutil.rmtree(lab.state_dir / ETCD_DIR, ignore_errors=True)


def datastore(lab: Lab) -> dict[str, Any] | None:
    """The state file's datastore entry (None: the lab writes each host's config)."""
    entry = lab.state().get(STATE_KEY)
    return entry if isinstance(entry, dict) else None


def write(lab: Lab, ops: Iterable[tuple[str, str, str]]) -> None:
    """Put or delete records ((op, key, value) with op "put" or "delete") in the lab's etcd, in order."""
    entry = datastore(lab)
    if entry is None:
        raise ClusterError(f"the lab {lab.topo.name!r} is not driven by etcd")
    batch = [{"op": op, "key": key, **({"value": value} if op == "put" else {})} for op, key, value in ops]
    etcd.apply(str(entry["namespace"]), str(entry["endpoint"]), batch)


def config_text(lab: Lab, host: LabHost) -> str:
    """A host's bgpd config file in a lab driven by etcd."""
    entry = datastore(lab)
    assert entry is not None
    from bgpd.lab.lab import METRICS_LISTEN

    cfg = records.host_config(
        host, str(entry["endpoint"]), lab.state_dir / host.name, METRICS_LISTEN, str(entry["prefix"])
    )
    head = f"# bgpd config generated by `bgpd lab` for {host.name}: the rest comes from etcd's records\n"
    return head + yaml.safe_dump(cfg, sort_keys=False)


# ------------------------------------------------------------------ a new host's plan


def plan_host(topo: Topology, name: str, workloads: int, reserved: Iterable[IPv4Address]) -> LabHost:
    """A new host for a one-segment lab (IPv4 plan; `bgpd.lab.topology.with_hosts` derives the rest):
    `name`, the first free address of the underlay after the highest node address (then from the start),
    the first free block of the pools after the highest block in use (then from the start), `workloads`
    addresses from the block's third one. `reserved`: addresses no node may take (etcd's). ClusterError
    naming what is wrong or full."""
    reserved_names = {SWITCH, ROUTER, ETCD, TRANSIT_SWITCH, *(f"{SWITCH}{k}" for k in range(len(topo.racks)))}
    reserved_names |= {f"{TOR}{k}" for k in range(len(topo.racks))}
    if not NAME.match(name):
        raise ClusterError(
            f"bad host name {name!r}: 1-10 lower-case letters or digits, starting with a letter"
        )
    if name in reserved_names:
        raise ClusterError(f"{name!r} is the name of one of the lab's own namespaces")
    if any(n.name == name for n in topo.nodes):
        raise ClusterError(f"{name} is a host of the lab already")
    size = next((b.prefixlen for h in topo.hosts for b in h.blocks), DEFAULT_BLOCK)
    most = 2 ** (32 - size) - FIRST_WORKLOAD
    if not 1 <= workloads <= most:
        raise ClusterError(f"--workloads: 1 to {most} workloads fit in a /{size} block")
    address = _next_address(topo, set(reserved))
    block = _next_block(topo, size)
    addresses = tuple(block.network_address + FIRST_WORKLOAD + i for i in range(workloads))
    return LabHost(name, address, (block,), addresses)


def _next_address(topo: Topology, reserved: set[IPv4Address]) -> IPv4Address:
    subnet = topo.underlay
    taken = {n.address for n in topo.nodes} | reserved | {subnet.network_address + 1}
    ordered = list(subnet.hosts())
    highest = max((a for a in taken if a in subnet and a != subnet.network_address + 1), default=None)
    start = ordered.index(highest) + 1 if highest is not None else 0
    for address in ordered[start:] + ordered[:start]:
        if address not in taken:
            return address
    raise ClusterError(f"no free address left in the underlay {subnet}")


def _next_block(topo: Topology, size: int) -> IPv4Network:
    used = [b for h in topo.hosts for b in h.blocks]
    workloads = [w for h in topo.hosts for w in h.workloads]
    for pool in topo.pools:
        if pool.prefixlen > size:
            continue
        candidates = list(pool.subnets(new_prefix=size))
        mine = [b for b in used if b.subnet_of(pool)]
        start = 0
        if mine:
            highest = max(mine, key=lambda b: int(b.network_address))
            start = next((i for i, c in enumerate(candidates) if c.overlaps(highest)), -1) + 1
        for block in candidates[start:] + candidates[:start]:
            if not any(block.overlaps(b) for b in used) and not any(w in block for w in workloads):
                return block
    raise ClusterError(f"no free block of /{size} left in the pools {', '.join(map(str, topo.pools))}")


# ------------------------------------------------------------------ sessions that must not reset


Sessions = dict[
    tuple[str, str], tuple[float, int]
]  # (host, peer address) -> (since, flaps), Established ones


def sessions(lab: Lab, hosts: Iterable[LabHost]) -> Sessions:
    """The Established sessions of `hosts` to one another, from each bgpd's `peers` view."""
    chosen = list(hosts)
    addresses = {str(a) for h in chosen for f in lab.topo.families for a in h.addresses(f)}
    out: Sessions = {}
    for host in chosen:
        for peer in ctl.request(lab.control_socket(host), "peers", timeout=10.0):
            if peer["address"] in addresses and peer["state"] == "up":
                out[(host.name, peer["address"])] = (float(peer["since"]), int(peer["flaps"]))
    return out


def resets(before: Sessions, after: Sessions) -> list[str]:
    """One line per session of `before` that is not Established in `after`, or was reset in between (its
    `since` moved or its `flaps` grew)."""
    out = []
    for (host, peer), (since, flaps) in sorted(before.items()):
        now = after.get((host, peer))
        if now is None:
            out.append(f"{host}'s session to {peer} is no longer Established")
        elif now != (since, flaps):
            out.append(f"{host}'s session to {peer} was reset (flaps {flaps} -> {now[1]})")
    return out


# ------------------------------------------------------------------ add-host, remove-host


def _require(lab: Lab, action: str) -> None:
    if datastore(lab) is None:
        if not lab.is_up():
            raise ClusterError(lab._not_up())
        raise ClusterError(
            f"{action} needs a lab driven by etcd: the lab {lab.topo.name!r} is not (`bgpd lab -t "
            f"{lab.topo.source} up --rebuild --datastore etcd`)"
        )
    if not lab.is_up():
        raise ClusterError(lab._not_up())
    pid = (datastore(lab) or {}).get("pid")
    if not isinstance(pid, int) or not etcd.running(pid):
        log = lab.state_dir / ETCD_DIR / "etcd.log"
        raise ClusterError(f"the lab's etcd (pid {pid}) is not running; read {log}")


def _entry(host: LabHost) -> dict[str, Any]:
    return {
        "name": host.name,
        "address": str(host.address),
        "blocks": [str(b) for b in host.blocks],
        "workloads": [str(w) for w in host.workloads],
    }


def added_hosts(state: dict[str, Any]) -> list[LabHost]:
    """The hosts `add_host` recorded in a state file (IPv4 plan)."""
    out = []
    for e in state.get("added", []):
        blocks = tuple(IPv4Network(b) for b in e["blocks"])
        workloads = tuple(IPv4Address(w) for w in e["workloads"])
        out.append(LabHost(e["name"], IPv4Address(e["address"]), blocks, workloads))
    return out


def add_host(lab: Lab, name: str, workloads: int, timeout: float) -> Change:
    """`bgpd lab add-host NAME`: see the module's docstring. On failure what was made for the host is
    removed again (its bgpd, its Node record, its namespaces) and ClusterError says which step failed."""
    _require(lab, "add-host")
    if lab.topo.routed or lab.topo.tunnels:
        raise ClusterError("add-host grows one-segment labs without IP-in-IP only")
    entry = datastore(lab)
    assert entry is not None
    started = time.monotonic()
    host = plan_host(lab.topo, name, workloads, [IPv4Address(entry["address"])])
    unchanged = list(lab.topo.hosts)
    before = sessions(lab, unchanged)
    state = lab.state()
    lab.update_state(added=[*state.get("added", []), _entry(host)])
    lab.refresh()
    host = lab.topo.host(name)
    step = f"building {name}'s namespaces"
    try:
        lab.build_host(host)
        step = f"writing {name}'s Node record"
        write(lab, [("put", *records.node(lab.topo, host))])
        step = f"starting bgpd on {name}"
        lab.update_state(pids={**lab.pids(), name: lab.start_bgpd(host)})
        step = "waiting for routes to converge"
        lab.wait_converged(timeout)
    except (netns.CommandError, OSError, etcd.EtcdError, ctl.CtlError, RuntimeError) as exc:
        _forget(lab, host, original=False)
        raise ClusterError(f"add-host {name} failed while {step}: {describe(exc)}; it was removed") from exc
    found = resets(before, sessions(lab, unchanged))
    return Change(host, len(before), tuple(found), time.monotonic() - started)


def remove_host(lab: Lab, name: str, timeout: float) -> Change:
    """`bgpd lab remove-host NAME`: see the module's docstring."""
    _require(lab, "remove-host")
    try:
        host = lab.topo.host(name)
    except KeyError:
        names = " ".join(h.name for h in lab.topo.hosts)
        raise ClusterError(f"no host {name!r} in the lab (hosts: {names})") from None
    if len(lab.topo.hosts) <= 2:
        raise ClusterError(f"the lab keeps at least two hosts: {name} is one of the last two")
    started = time.monotonic()
    others = [h for h in lab.topo.hosts if h.name != name]
    before = sessions(lab, others)
    original = any(h.name == name for h in lab.base.hosts)
    step = f"removing {name}"
    try:
        _forget(lab, host, original)
        step = "waiting for the other hosts to drop its routes and sessions"
        lab.wait_converged(timeout)
    except (netns.CommandError, OSError, etcd.EtcdError, ctl.CtlError, RuntimeError) as exc:
        raise ClusterError(f"remove-host {name} failed while {step}: {describe(exc)}") from exc
    found = resets(before, sessions(lab, others))
    return Change(host, len(before), tuple(found), time.monotonic() - started)


def _forget(lab: Lab, host: LabHost, original: bool) -> None:
    """Delete the host's Node record, wait (up to `DECONFIGURE_WAIT` s) until no other host has a session
    to it (each ends its session with Cease / Peer De-configured and drops its routes at once), then stop
    its bgpd (by pid), remove its namespaces and record that the lab no longer has it (`removed` for a
    host of the topology file, dropped from `added` otherwise). Stopping it first would make the others
    keep its routes as graceful-restart helpers until the record's deletion reached them."""
    from bgpd.lab.lab import _stop_pid

    with contextlib.suppress(etcd.EtcdError):  # reported by the convergence wait if it stays
        write(lab, [("delete", records.key("nodes", host.name, str(_prefix(lab))), "")])
    others = [h for h in lab.topo.hosts if h.name != host.name]
    gone = {str(a) for family in lab.topo.families for a in host.addresses(family)}

    def deconfigured() -> bool:
        return all(gone.isdisjoint(peers) for peers in _configured(lab, others).values())

    with contextlib.suppress(TimeoutError):  # the convergence wait says what stayed
        netns.wait_for(deconfigured, DECONFIGURE_WAIT, f"the other hosts to deconfigure {host.name}")
    pids = lab.pids()
    if host.name in pids:
        _stop_pid(pids.pop(host.name))
    for index in range(len(host.workloads)):
        netns.remove_namespace(lab.workload_ns(host, index))
    netns.remove_namespace(lab.host_ns(host))
    state = lab.state()
    added = [e for e in state.get("added", []) if e.get("name") != host.name]
    removed = [*state.get("removed", []), host.name] if original else state.get("removed", [])
    lab.update_state(pids=pids, added=added, removed=removed)
    lab.refresh()


def _configured(lab: Lab, hosts: Iterable[LabHost]) -> dict[str, set[str]]:
    """host name -> the peer addresses its bgpd has configured now (a host that does not answer: none)."""
    out: dict[str, set[str]] = {}
    for h in hosts:
        try:
            peers = ctl.request(lab.control_socket(h), "peers", timeout=5.0)
        except ctl.CtlError:
            peers = []
        out[h.name] = {str(p["address"]) for p in peers}
    return out


def _prefix(lab: Lab) -> str:
    entry = datastore(lab)
    return str(entry["prefix"]) if entry is not None else records.DEFAULT_PREFIX


def describe_datastore(lab: Lab) -> list[str]:
    """Lines for the summary: what drives the lab (none when its configs are files)."""
    entry = datastore(lab)
    if entry is None:
        return []
    pools = len(lab.topo.pools) + len(lab.topo.pools6)
    return [
        f"datastore: etcd at {entry['endpoint']} (namespace {entry['namespace']}, pid {entry['pid']}); "
        f"records: {len(lab.topo.hosts)} Node, {pools} IPPool, BGPConfiguration default",
        "each host's config: node.name, the datastore and its local sections (bgp.hold_time, export, kernel, "
        "runtime, metrics)",
    ]
