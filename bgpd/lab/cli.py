"""`bgpd lab ...`: argument handling and the text the lab prints: the summary (one line per host and
family), one ping matrix per family, a host's routes (both families). In a lab with racks or IP-in-IP, the
summary also names the racks, the pools' ipip modes and the kind of tunl0; the matrix marks the pairs that
go through tunl0 and explains failures that cross the router without a tunnel; `check` and `routes` show
tunl0's packet counters. In a ToR lab (`tor` key) the summary also shows the racks' BGP routers, and
`routes` the AS path of every learned route (a router's name shows that router's table). In a lab driven
by etcd (`up --datastore etcd`) the summary names etcd's endpoint; `add-host` and `remove-host` print the
summary and whether the sessions between the hosts that did not change were kept (exit 1 when one was
reset).

Errors are one line (`bgpd.oneline`): a bad topology exits 2, a wrong state (not root, not up, already up,
an unknown host or workload, one removed already) or a failed step exits 1 (`EXPECTED`, the errors a lab
command can meet); `up` on a running lab is refused unless `--rebuild`."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from bgpd import ctl
from bgpd.lab import cluster, netns, tor
from bgpd.lab.etcd import EtcdError
from bgpd.lab.felix import KERNEL_IPIP, TUNNEL, TunnelCounters
from bgpd.lab.lab import TUNNEL_GROUP, HostSummary, Lab, LabError, Ping, session_families
from bgpd.lab.topology import NAME, TopologyError, load
from bgpd.oneline import Parser

DEFAULT_TOPOLOGY = "configs/lab.yaml"
# what a lab command can meet besides a bad topology; each is one line for the user (`bgpd.oneline.guard`)
EXPECTED: tuple[type[BaseException], ...] = (
    LabError,
    cluster.ClusterError,
    EtcdError,
    netns.CommandError,
    ctl.CtlError,
    TimeoutError,
    subprocess.TimeoutExpired,
)
TOPOLOGIES = Path(__file__).resolve().parent / "topologies"  # package data (configs/ links to them)


def shipped() -> list[str]:
    """The names of the topologies shipped with the package (bgpd/lab/topologies/NAME.yaml)."""
    return sorted(p.stem for p in TOPOLOGIES.glob("*.yaml"))


def resolve(given: str) -> Path:
    """The topology file for `-t`: the path as given if it exists; else a shipped topology of that name
    (`lab-tor`, `lab-tor.yaml` or `configs/lab-tor.yaml` alike), so the shipped ones work from any directory
    after `pip install`; else the path as given (loading it then says it does not exist)."""
    path = Path(given)
    if path.exists():
        return path
    name = path.name if path.suffix == ".yaml" else f"{path.name}.yaml"
    candidate = TOPOLOGIES / name
    return candidate if candidate.exists() else path


def _seconds(text: str) -> float:
    """A deadline in seconds for argparse: a number, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: seconds, 0 or more")
    return value


def _host_name(text: str) -> str:
    """A lab host's name for argparse (the topology's rule)."""
    if not NAME.match(text):
        raise argparse.ArgumentTypeError(
            f"{text!r}: 1-10 lower-case letters or digits, starting with a letter"
        )
    return text


def _workloads(text: str) -> int:
    """A number of workloads for argparse: 1 or more (the block's size bounds it later)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: 1 or more")
    return value


def _address(text: str) -> IPv4Address | IPv6Address:
    """A workload's address for argparse."""
    try:
        return ip_address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 or IPv6 address") from None


def add_parser(sub: argparse._SubParsersAction[Parser]) -> None:
    lab = sub.add_parser("lab", help="simulated hosts and workloads in network namespaces, with real bgpd")
    lab.add_argument(
        "-t",
        "--topology",
        default=DEFAULT_TOPOLOGY,
        help=f"topology YAML, or a shipped one's name: {', '.join(shipped())} (default {DEFAULT_TOPOLOGY})",
    )
    lab.add_argument(
        "--state-dir", type=Path, help="where configs, logs and pids go (default /run/bgpd-lab/NAME)"
    )
    actions = lab.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="build the network, start one bgpd per host, wait for convergence")
    up.add_argument("--timeout", type=_seconds, default=60.0, help="convergence deadline in seconds")
    up.add_argument(
        "--rebuild", action="store_true", help="if the lab is up already: remove it and build it again"
    )
    up.add_argument(
        "--datastore",
        choices=("none", "etcd"),
        help="etcd: start etcd, write Calico's records and give each bgpd only its name and the datastore "
        "(default: the topology's `datastore`, else none)",
    )
    actions.add_parser(
        "down",
        help="remove the lab's namespaces, processes and etcd data (configs and logs stay in its state dir)",
    )
    reload = actions.add_parser(
        "reload", help="apply changed pool ipip modes to the running lab (configs rewritten, bgpd reloaded)"
    )
    reload.add_argument("--timeout", type=_seconds, default=60.0, help="convergence deadline in seconds")
    actions.add_parser("check", help="ping every workload and host from every workload, in each family")
    routes = actions.add_parser("routes", help="a host's kernel routes (both families), grouped")
    routes.add_argument("host")
    rm = actions.add_parser("remove-workload", help="delete a workload (its route, veth and namespace)")
    rm.add_argument("address", type=_address, help="its IPv4 or its IPv6 address")
    add = actions.add_parser(
        "add-host", help="a lab driven by etcd: a new host (namespaces, Node record, bgpd), live"
    )
    add.add_argument("name", type=_host_name)
    add.add_argument("--workloads", type=_workloads, default=1, help="workloads in its block (default 1)")
    add.add_argument("--timeout", type=_seconds, default=60.0, help="convergence deadline in seconds")
    remove = actions.add_parser(
        "remove-host", help="a lab driven by etcd: stop a host's bgpd, delete its Node record and namespaces"
    )
    remove.add_argument("name", type=_host_name)
    remove.add_argument("--timeout", type=_seconds, default=60.0, help="convergence deadline in seconds")
    lab.set_defaults(func=run)


def print_summary(lab: Lab, hosts: list[HostSummary], seconds: float) -> None:
    """One line per node and family; a node's name only on its first line."""
    v4 = [h for h in hosts if h.family == 4]
    workloads = sum(len(h.workloads) for h in v4)
    reflectors = sum(1 for h in v4 if h.reflector)
    counts = f"{len(v4) - reflectors} hosts, " + (f"{reflectors} reflectors, " if reflectors else "")
    stack = "dual stack" if lab.topo.ipv6 else "IPv4 only"
    print(f"lab {lab.topo.name!r}: {counts}{workloads} workloads, {stack}, converged in {seconds:.1f} s")
    for line in cluster.describe_datastore(lab):
        print(line)
    print_plan(lab)
    tunnel = lab.tunnel_kind() is not None
    width = max(16, *(len(h.address) + 1 for h in hosts))
    head = f"{'HOST':<8} {'ADDRESS':<{width}} {'SESSIONS':<9} {'BGP':>4}"
    head += f" {'TUNL0':>6}" if tunnel else ""
    print(f"{head} {'LOCAL':>6} {'BLACKHOLE':>10}  WORKLOADS")
    previous = None
    for h in hosts:
        r = h.routes
        sessions = f"{h.sessions_up}/{h.sessions_total}"
        what = "(route reflector)" if h.reflector else " ".join(h.workloads)
        name = "" if h.name == previous else h.name
        previous = h.name
        learned = r["learned via BGP"] + r.get(TUNNEL_GROUP, 0)
        through = f" {r.get(TUNNEL_GROUP, 0):>6}" if tunnel else ""
        print(
            f"{name:<8} {h.address:<{width}} {sessions:<9} {learned:>4}{through} "
            f"{r['local workloads']:>6} {r['blackholes']:>10}  {what}".rstrip()
        )
    if lab.topo.tor is not None:
        for rack, name in tor.routers(lab.topo):
            address = str(lab.topo.racks[rack].network_address + 1)
            sessions = f"{len(session_families(lab.prefix + name))}/{tor.router_sessions(lab.topo, rack)}"
            learned = len(tor.router_learned(lab, rack))
            what = f"(rack {rack}'s router: BIRD, AS {lab.topo.tor.asns[rack]})"
            print(f"{name:<8} {address:<{width}} {sessions:<9} {learned:>4} {'':>6} {'':>10}  {what}")
        print("(BGP: routes bgpd installed on a host, BIRD in a router's table)")
    if tunnel:
        print(f"(BGP: routes bgpd installed; TUNL0: those of them via {TUNNEL}, IP-in-IP)")
    print(f"logs and configs: {lab.state_dir}")


def print_plan(lab: Lab) -> None:
    """The racks, the pools' ipip modes and Felix's tunl0, for a lab that has any of them (nothing for the
    classic one-segment labs)."""
    topo = lab.topo
    if topo.tor is not None:
        print_tor_plan(lab)
        return
    if topo.routed:
        racks = ", ".join(
            f"{net} ({' '.join(n.name for n in topo.nodes if n.rack == k)})"
            for k, net in enumerate(topo.racks)
        )
        legs = ", ".join(str(net.network_address + 1) for net in topo.racks)
        print(f"racks: {racks}; joined by a router ({legs}) that has no route to workloads")
    if not topo.writes_subnet:
        return
    print("pools: " + ", ".join(f"{p} ipip {m}" for p, m in zip(topo.pools, topo.modes, strict=True)))
    kind = lab.tunnel_kind()
    if kind is None:
        print(f"{TUNNEL}: none (no pool uses IP-in-IP; Felix creates it for ipip: always or cross-subnet)")
        return
    host = topo.hosts[0]
    if kind == KERNEL_IPIP:
        what = "the kernel's ipip device"
    else:
        what = (
            "a TUN device and a userspace IP-in-IP encapsulator per host (bgpd.lab.ipip; this kernel has "
            "no ipip device)"
        )
    mtu = lab.tunnel_mtu(host)
    print(f"{TUNNEL}: {what}; a /32 of each host's block ({host.name}: {host.tunnel_address}), MTU {mtu}")


def print_tor_plan(lab: Lab) -> None:
    """The racks, their BGP routers and the hosts' peering, for a ToR lab."""
    topo = lab.topo
    plan = tor.plan(topo)
    racks = ", ".join(
        f"{net} ({' '.join(h.name for h in topo.hosts if h.rack == k)})" for k, net in enumerate(topo.racks)
    )
    routers = ", ".join(
        f"{plan.name(k)} {net.network_address + 1} AS {plan.asns[k]}" for k, net in enumerate(topo.racks)
    )
    print(f"racks: {racks}")
    transit = f"; they peer with each other on {plan.transit}" if len(topo.racks) > 1 else ""
    print(f"routers: {routers} (BIRD 2, eBGP{transit})")
    print(
        f"hosts: AS {topo.asn}, eBGP with their rack's router only (no mesh), allow_local_as "
        f"{plan.allow_local_as}"
    )
    print("pools: " + ", ".join(f"{p} ipip {m}" for p, m in zip(topo.pools, topo.modes, strict=True)))
    print(f"{TUNNEL}: none (the routers carry the workload routes: nothing is encapsulated)")


def print_routes(lab: Lab, name: str) -> None:
    """`routes NAME`: a host's kernel routes, grouped (in a ToR lab with the AS path bgpd received for each
    learned one), or a ToR router's table with BIRD's AS paths."""
    topo = lab.topo
    if topo.tor is not None and name in topo.tor.names:
        try:
            groups = tor.router_routes(lab, name)
        except LookupError:
            raise LabError(lab._not_up()) from None
        source = "BIRD's best route (birdc show route all)"
    else:
        groups = lab.routes(name)
        source = ""
        if topo.tor is not None:
            host = topo.host(name)
            learned = groups["learned via BGP"]
            groups["learned via BGP"] = tor.with_as_paths(learned, tor.bgpd_as_paths(lab, host))
            rack = host.rack
            source = (
                f"bgpd's best path (bgpctl show routes); peer {topo.gateway_of(host)}: "
                f"{topo.tor.name(rack)}, AS {topo.tor.asns[rack]}"
            )
    for group, lines in groups.items():
        print(f"{group}:")
        for line in lines or ["(none)"]:
            print(f"  {line}")
    if source:
        print(f"(as-path: {source})")


def print_matrix(pings: list[Ping]) -> None:
    """One matrix per family (sources down, targets across: the workloads in the same order, then the
    hosts), its count of answered pings, then every failure by name."""
    for number, family in enumerate(dict.fromkeys(p.family for p in pings)):
        if number:
            print()
        _print_family(family, [p for p in pings if p.family == family])


def _print_family(family: int, pings: list[Ping]) -> None:
    tunnel = any(p.tunnel for p in pings)
    sources = list(dict.fromkeys(p.source for p in pings))
    targets = list(dict.fromkeys([*sources, *(p.target for p in pings)]))
    cell = {(p.source, p.target): p for p in pings}
    width = max(len(t) for t in targets) + 1
    corner = f"IPv{family} from \\ to"
    label = max(len(corner), *(len(s) for s in sources)) + 1
    pad = 1 if tunnel else 0
    print((f"{corner:<{label}}" + "".join(f"{t:>{width}}{' ' * pad}" for t in targets)).rstrip())
    for s in sources:
        row = []
        for t in targets:
            p = cell.get((s, t))
            text = "-" if p is None else (f"✓ {p.rtt_ms:.2f}" if p.ok else "✗")
            if tunnel:  # a column for the mark, so the numbers stay aligned
                text += "*" if p is not None and p.tunnel else " "
            row.append(f"{text:>{width + (1 if tunnel else 0)}}")
        print((f"{s:<{label}}" + "".join(row)).rstrip())
    failed = [p for p in pings if not p.ok]
    legend = f"; * through {TUNNEL}, IP-in-IP" if tunnel else ""
    answered = f"{len(pings) - len(failed)}/{len(pings)} IPv{family} pings answered"
    print(f"{answered} (✓ round-trip time in ms{legend})")
    for p in failed:
        print(f"FAILED: {p.source} -> {p.target}" + (f": {p.why}" if p.why else ""))


def print_counters(before: dict[str, TunnelCounters], after: dict[str, TunnelCounters]) -> None:
    """tunl0's packet counters on each host, and how much they moved (during a check)."""
    if not after:
        return
    print()
    print(f"{TUNNEL} packets per host, out = encapsulated, in = decapsulated (during this check, total):")
    for name, now in after.items():
        moved = now - before.get(name, TunnelCounters(0, 0))
        print(f"  {name:<8} out {moved.out:>4} in {moved.in_:>4}   (total out {now.out} in {now.in_})")


def run(args: argparse.Namespace) -> int:
    """One `bgpd lab` command: its exit code. The errors in EXPECTED are left to the caller's guard."""
    try:
        topo = load(resolve(args.topology))
    except TopologyError as exc:
        print(f"bgpd lab: {exc}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces)")
    lab = Lab(topo, args.state_dir)
    if args.action == "up":
        import time

        started = time.monotonic()
        hosts = lab.up(args.timeout, rebuild=args.rebuild, datastore=args.datastore)
        print_summary(lab, hosts, time.monotonic() - started)
    elif args.action == "down":
        removed = lab.down()
        print(f"removed {len(removed)} namespaces" + (f": {' '.join(removed)}" if removed else ""))
    elif args.action == "reload":
        import time

        started = time.monotonic()
        hosts = lab.reload(args.timeout)
        print_summary(lab, hosts, time.monotonic() - started)
    elif args.action == "check":
        before = lab.tunnel_counters()
        pings = lab.check()
        print_matrix(pings)
        print_counters(before, lab.tunnel_counters())
        return 0 if all(p.ok for p in pings) else 1
    elif args.action == "routes":
        print_routes(lab, args.host)
        counters = lab.tunnel_counters().get(args.host)
        if counters is not None:
            host = lab.topo.host(args.host)
            print(
                f"{TUNNEL}: {host.tunnel_address}/32, MTU {lab.tunnel_mtu(host)}; packets out "
                f"(encapsulated) {counters.out}, in (decapsulated) {counters.in_}"
            )
    elif args.action == "remove-workload":
        lab.remove_workload(args.address)
        print(f"removed workload {args.address}")
    elif args.action in ("add-host", "remove-host"):
        if args.action == "add-host":
            change = cluster.add_host(lab, args.name, args.workloads, args.timeout)
        else:
            change = cluster.remove_host(lab, args.name, args.timeout)
        return print_change(lab, args.action, change)
    return 0


def print_change(lab: Lab, action: str, change: cluster.Change) -> int:
    """The lab after add-host / remove-host, and whether the other hosts' sessions were kept: 0, or 1 when
    one was reset."""
    host = change.host
    if action == "add-host":
        where = f"{host.address}, block {' '.join(map(str, (*host.blocks, *host.blocks6)))}"
        print(f"added {host.name} ({where}); its Node record is in etcd")
    else:
        print(f"removed {host.name}: bgpd stopped, Node record deleted, namespaces removed")
    print_summary(lab, lab.summary(), change.seconds)
    if change.resets:
        for line in change.resets:
            print(f"RESET: {line}")
        print(f"{len(change.resets)} of {change.kept} sessions between the other hosts were reset")
        return 1
    print(f"sessions between the other hosts: {change.kept} kept, none reset (same `since`, no flap)")
    return 0
