"""`bgpd lab ...`: argument handling and the text the lab prints (summary, ping matrix, routes)."""

from __future__ import annotations

import argparse
import sys
from ipaddress import IPv4Address
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
    actions.add_parser("check", help="ping every workload and host from every workload")
    routes = actions.add_parser("routes", help="a host's kernel routes, grouped")
    routes.add_argument("host")
    rm = actions.add_parser("remove-workload", help="delete a workload (its route, veth and namespace)")
    rm.add_argument("address", type=IPv4Address)
    lab.set_defaults(func=run)


def print_summary(lab: Lab, hosts: list[HostSummary], seconds: float) -> None:
    workloads = sum(len(h.workloads) for h in hosts)
    reflectors = sum(1 for h in hosts if h.reflector)
    counts = f"{len(hosts) - reflectors} hosts, " + (f"{reflectors} reflectors, " if reflectors else "")
    print(f"lab {lab.topo.name!r}: {counts}{workloads} workloads, converged in {seconds:.1f} s")
    print(f"{'HOST':<8} {'ADDRESS':<16} {'SESSIONS':<9} {'BGP':>4} {'LOCAL':>6} {'BLACKHOLE':>10}  WORKLOADS")
    for h in hosts:
        r = h.routes
        sessions = f"{h.sessions_up}/{h.sessions_total}"
        what = "(route reflector)" if h.reflector else " ".join(h.workloads)
        print(
            f"{h.name:<8} {h.address:<16} {sessions:<9} {r['learned via BGP']:>4} "
            f"{r['local workloads']:>6} {r['blackholes']:>10}  {what}"
        )
    print(f"logs and configs: {lab.state_dir}")


def print_matrix(pings: list[Ping]) -> None:
    sources = list(dict.fromkeys(p.source for p in pings))
    targets = list(dict.fromkeys(p.target for p in pings))
    cell = {(p.source, p.target): p for p in pings}
    width = max(len(t) for t in targets) + 1
    corner = "from \\ to"
    print(f"{corner:<12}" + "".join(f"{t:>{width}}" for t in targets))
    for s in sources:
        row = []
        for t in targets:
            p = cell.get((s, t))
            text = "-" if p is None else (f"✓ {p.rtt_ms:.2f}" if p.ok else "✗")
            row.append(f"{text:>{width}}")
        print(f"{s:<12}" + "".join(row))
    failed = [p for p in pings if not p.ok]
    print(f"{len(pings) - len(failed)}/{len(pings)} pings answered (✓ round-trip time in ms)")
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
