"""`bgpd lab ...`: argument handling and the text the lab prints: the summary (one line per host and
family), one ping matrix per family, a host's routes (both families)."""

from __future__ import annotations

import argparse
import sys
from ipaddress import ip_address
from pathlib import Path

from bgpd.lab.lab import HostSummary, Lab, LabError, Ping
from bgpd.lab.topology import TopologyError, load

DEFAULT_TOPOLOGY = "configs/lab.yaml"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = sub.add_parser("lab", help="simulated hosts and workloads in network namespaces, with real bgpd")
    lab.add_argument(
        "-t", "--topology", default=DEFAULT_TOPOLOGY, help=f"topology YAML (default {DEFAULT_TOPOLOGY})"
    )
    lab.add_argument(
        "--state-dir", type=Path, help="where configs, logs and pids go (default /run/bgpd-lab/NAME)"
    )
    actions = lab.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="build the network, start one bgpd per host, wait for convergence")
    up.add_argument("--timeout", type=float, default=60.0, help="convergence deadline in seconds")
    actions.add_parser("down", help="remove everything the lab created")
    actions.add_parser("check", help="ping every workload and host from every workload, in each family")
    routes = actions.add_parser("routes", help="a host's kernel routes (both families), grouped")
    routes.add_argument("host")
    rm = actions.add_parser("remove-workload", help="delete a workload (its route, veth and namespace)")
    rm.add_argument("address", type=ip_address, help="its IPv4 or its IPv6 address")
    lab.set_defaults(func=run)


def print_summary(lab: Lab, hosts: list[HostSummary], seconds: float) -> None:
    """One line per node and family; a node's name only on its first line."""
    v4 = [h for h in hosts if h.family == 4]
    workloads = sum(len(h.workloads) for h in v4)
    reflectors = sum(1 for h in v4 if h.reflector)
    counts = f"{len(v4) - reflectors} hosts, " + (f"{reflectors} reflectors, " if reflectors else "")
    stack = "dual stack" if lab.topo.ipv6 else "IPv4 only"
    print(f"lab {lab.topo.name!r}: {counts}{workloads} workloads, {stack}, converged in {seconds:.1f} s")
    width = max(16, *(len(h.address) + 1 for h in hosts))
    head = f"{'HOST':<8} {'ADDRESS':<{width}} {'SESSIONS':<9} {'BGP':>4} {'LOCAL':>6} {'BLACKHOLE':>10}"
    print(f"{head}  WORKLOADS")
    previous = None
    for h in hosts:
        r = h.routes
        sessions = f"{h.sessions_up}/{h.sessions_total}"
        what = "(route reflector)" if h.reflector else " ".join(h.workloads)
        name = "" if h.name == previous else h.name
        previous = h.name
        print(
            f"{name:<8} {h.address:<{width}} {sessions:<9} {r['learned via BGP']:>4} "
            f"{r['local workloads']:>6} {r['blackholes']:>10}  {what}".rstrip()
        )
    print(f"logs and configs: {lab.state_dir}")


def print_matrix(pings: list[Ping]) -> None:
    """One matrix per family (sources down, targets across: the workloads in the same order, then the
    hosts), its count of answered pings, then every failure by name."""
    for number, family in enumerate(dict.fromkeys(p.family for p in pings)):
        if number:
            print()
        _print_family(family, [p for p in pings if p.family == family])


def _print_family(family: int, pings: list[Ping]) -> None:
    sources = list(dict.fromkeys(p.source for p in pings))
    targets = list(dict.fromkeys([*sources, *(p.target for p in pings)]))
    cell = {(p.source, p.target): p for p in pings}
    width = max(len(t) for t in targets) + 1
    corner = f"IPv{family} from \\ to"
    label = max(len(corner), *(len(s) for s in sources)) + 1
    print(f"{corner:<{label}}" + "".join(f"{t:>{width}}" for t in targets))
    for s in sources:
        row = []
        for t in targets:
            p = cell.get((s, t))
            text = "-" if p is None else (f"✓ {p.rtt_ms:.2f}" if p.ok else "✗")
            row.append(f"{text:>{width}}")
        print(f"{s:<{label}}" + "".join(row))
    failed = [p for p in pings if not p.ok]
    print(f"{len(pings) - len(failed)}/{len(pings)} IPv{family} pings answered (✓ round-trip time in ms)")
    for p in failed:
        print(f"FAILED: {p.source} -> {p.target}")


def run(args: argparse.Namespace) -> int:
    try:
        topo = load(args.topology)
    except TopologyError as exc:
        print(f"bgpd lab: {exc}", file=sys.stderr)
        return 2
    lab = Lab(topo, args.state_dir)
    try:
        if args.action == "up":
            import time

            started = time.monotonic()
            hosts = lab.up(args.timeout)
            print_summary(lab, hosts, time.monotonic() - started)
        elif args.action == "down":
            removed = lab.down()
            print(f"removed {len(removed)} namespaces" + (f": {' '.join(removed)}" if removed else ""))
        elif args.action == "check":
            pings = lab.check()
            print_matrix(pings)
            return 0 if all(p.ok for p in pings) else 1
        elif args.action == "routes":
            for group, lines in lab.routes(args.host).items():
                print(f"{group}:")
                for line in lines or ["(none)"]:
                    print(f"  {line}")
        elif args.action == "remove-workload":
            lab.remove_workload(args.address)
            print(f"removed workload {args.address}")
    except LabError as exc:
        print(f"bgpd lab: {exc}", file=sys.stderr)
        return 1
    return 0
