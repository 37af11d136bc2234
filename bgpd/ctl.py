"""`bgpctl`: talks to a running bgpd over its control socket (see `bgpd.control`), birdc-style.

    bgpctl [-s SOCKET | -c CONFIG] show peers|routes [PREFIX]|kernel|status|config [-4|-6] [--json]
    bgpctl reload
    bgpctl health --live | --ready

Exit codes: 0 success (for health: probe passed), 1 failure (daemon not running, permission denied,
invalid or unknown prefix, reload rejected, probe failed), 2 usage error, 70 a bug. Errors are one line on
stderr (`bgpd.oneline`); a failed probe's verdict (`FAIL: reason`) is the probe's output, on stdout.
Arguments are checked before the daemon is asked, so a bad prefix is named even when bgpd is not running.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_network
from typing import Any

from bgpd import runlock
from bgpd.oneline import Parser, guard

DEFAULT_SOCKET = "/run/bgpd/bgpd.ctl"
STATE_NAMES = {
    "up": "Established",
    "connected": "Connect",
    "down": "Idle",
    "idle": "Idle",
    "held-down": "Held down",  # max prefixes exceeded: out of ExaBGP until restart_after (RFC 4486)
}


class CtlError(Exception):
    pass


def _starting(path: str) -> str | None:
    """When the socket's directory is a runtime directory a bgpd holds (`bgpd.runlock`), the line saying
    it is starting; else None."""
    pid = runlock.holder(os.path.dirname(path) or ".")
    if pid is None:
        return None
    return (
        f"bgpd (pid {pid}) is starting and does not answer yet: no control socket at {path} "
        "(with a datastore it waits for etcd and this node's Node record first; its log says why)"
    )


def request(path: str, command: str, args: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
    """Send one command (`timeout` in seconds for the whole exchange); return its result or raise CtlError
    with a one-line explanation (not running, not a socket, permission denied, the daemon's refusal)."""
    _check_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except FileNotFoundError:
        raise CtlError(_starting(path) or f"bgpd is not running (no control socket at {path})") from None
    except ConnectionRefusedError:
        raise CtlError(_starting(path) or f"bgpd is not running (nothing listens on {path})") from None
    except PermissionError:
        raise CtlError(f"permission denied on {path} (the control socket is root only)") from None
    except OSError as exc:
        sock.close()
        raise CtlError(f"cannot connect to {path}: {exc.strerror or exc}") from None
    try:
        sock.sendall(json.dumps({"command": command, "args": args or {}}).encode() + b"\n")
        chunks = []
        while chunk := sock.recv(1 << 16):
            chunks.append(chunk)
    except OSError as exc:
        raise CtlError(f"control socket {path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    try:
        reply = json.loads(b"".join(chunks))
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise CtlError(f"no answer from bgpd on {path} (the connection closed; see bgpd's log)")
    if not reply.get("ok"):
        raise CtlError(str(reply.get("error", "unknown error")))
    return reply.get("result")


def _check_socket(path: str) -> None:
    """A path that exists but cannot be bgpd's control socket (a directory, a plain file) named as such."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or unreadable: connect() says which
    if stat.S_ISDIR(mode):
        raise CtlError(f"{path} is a directory, not bgpd's control socket (runtime.dir/bgpd.ctl)")
    if not stat.S_ISSOCK(mode):
        raise CtlError(f"{path} is not a socket, so not bgpd's control socket (runtime.dir/bgpd.ctl)")


def check_prefix(prefix: str, family: int | None) -> None:
    """`show routes PREFIX [-4|-6]` checked as the daemon checks it (a prefix without host bits, or an
    address), before asking: CtlError naming what is wrong."""
    try:
        net = ip_network(prefix)
    except ValueError:
        raise CtlError(
            f"{prefix!r} is not a prefix (ADDRESS/LENGTH without host bits, or an address)"
        ) from None
    if family is not None and net.version != family:
        raise CtlError(f"{net} is an IPv{net.version} prefix, not IPv{family}")


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


@dataclass(frozen=True, slots=True)
class Column:
    """One column of `show peers`: its header, its cell for a peer (the daemon's JSON), its width (0: no
    padding, for the last column) and alignment, and the text before it. Adding a column is adding one."""

    header: str
    cell: Callable[[dict[str, Any]], object]
    width: int = 0
    right: bool = False
    gap: str = " "


PEER_COLUMNS: tuple[Column, ...] = (
    Column("AS", lambda p: p["asn"], 10),
    Column("Type", lambda p: p["type"], 9),
    Column("State", lambda p: STATE_NAMES.get(p["state"], p["state"]), 12),
    Column("Since", lambda p: _when(p["since"]), 19),
    Column("Recv", lambda p: p["received"], 6, right=True, gap="  "),
    Column("Acc", lambda p: p["accepted"], 6, right=True),
    Column("Rej", lambda p: sum(p["rejected"].values()), 5, right=True),
    Column("Max", lambda p: "-" if p.get("max_prefixes") is None else p["max_prefixes"], 6, right=True),
    Column("Adv", lambda p: p["advertised"], 6, right=True),
    Column("AFI", lambda p: p["afi"], gap="  "),
)


def render_peers(peers: list[dict[str, Any]], columns: tuple[Column, ...] = PEER_COLUMNS) -> str:
    """The peers table: the address, then `columns`; a line of rejection reasons under a peer that has
    any, and a line with the reason of a session that cannot be established (or is held down)."""
    w = max([16, *(len(p["address"]) + 1 for p in peers)])

    def row(first: str, cells: list[object]) -> str:
        out = f"{first:<{w}}"
        for c, value in zip(columns, cells, strict=True):
            out += c.gap + f"{value!s:{'>' if c.right else '<'}{c.width or ''}}"
        return out

    lines = [row("Peer", [c.header for c in columns])]
    for p in peers:
        lines.append(row(p["address"], [c.cell(p) for c in columns]))
        if p["rejected"]:
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(p["rejected"].items()))
            lines.append(f"{'':<{w}} rejected: {reasons}")
        if p.get("reason"):
            lines.append(f"{'':<{w}} reason: {p['reason']}")
    return "\n".join(lines)


def render_routes(routes: list[dict[str, Any]]) -> str:
    lines = []
    w = max([20, *(len(r["prefix"]) + 1 for r in routes)])
    hw = max([15, *(len(p["next_hop"]) for r in routes for p in r["paths"])])
    fw = max([15, *(len(p["from"]) for r in routes for p in r["paths"])])
    for r in routes:
        notes = []
        if r["local"]:
            notes.append("announced by this host")
        if r["installed"]:
            notes.append("installed via " + ", ".join(r["installed"]))
        elif r["paths"]:
            notes.append("not installed")
        if r.get("not_installed_because"):
            notes.append(r["not_installed_because"])
        if r["collision"]:
            notes.append("held by a foreign kernel route")
        if r["suppressed"]:
            notes.append("learned copies ignored (own prefix)")
        lines.append(f"{r['prefix']:<{w}} {'; '.join(notes)}")
        for p in r["paths"]:
            mark = "*" if p["best"] else ("=" if p["ecmp"] else " ")
            attrs = [
                f"lp {p['local_pref']}",
                f"as-path {' '.join(map(str, p['as_path'])) or '-'}",
                p["origin"],
            ]
            if p["med"] is not None:
                attrs.append(f"med {p['med']}")
            if p["communities"]:
                attrs.append("communities " + " ".join(p["communities"]))
            if p.get("large_communities"):
                attrs.append("large-communities " + " ".join(p["large_communities"]))
            if p.get("ebgp"):
                attrs.append("ebgp")
            if p["originator_id"]:
                attrs.append(f"originator {p['originator_id']}")
            if p["cluster_list"]:
                attrs.append("cluster-list " + " ".join(p["cluster_list"]))
            lines.append(f"   {mark} via {p['next_hop']:<{hw}} from {p['from']:<{fw}} [{', '.join(attrs)}]")
    lines.append("(* best, = equal-cost path used for ECMP)" if routes else "no routes")
    return "\n".join(lines)


def render_kernel(k: dict[str, Any]) -> str:
    lines = [f"table {k['table']}, protocol {k['protocol']}, install {'on' if k['install'] else 'off'}"]
    lines.append(f"owned by bgpd ({len(k['owned'])}):")
    lines += [f"  {o['prefix']} via {', '.join(o['next_hops']) or '-'}" for o in k["owned"]]
    lines.append(f"selected for export ({len(k['selected_for_export'])}):")
    lines += [
        f"  {s['prefix']} {s['kind']} proto {s['protocol']}" + (f" dev {s['device']}" if s["device"] else "")
        for s in k["selected_for_export"]
    ]
    lines.append(f"announced ({len(k['announced'])}): {' '.join(k['announced']) or '-'}")
    if k["collisions"]:
        lines.append(f"collisions with foreign routes: {' '.join(k['collisions'])}")
    if k["stale_from_earlier_run"]:
        lines.append(f"kept from an earlier run until reconciled: {' '.join(k['stale_from_earlier_run'])}")
    if k["not_installed"]:
        lines.append(f"wanted, not in the kernel yet ({len(k['not_installed'])}):")
        lines += [
            f"  {o['prefix']} via {', '.join(o['next_hops'])}"
            + (f"  ({o['reason']})" if o.get("reason") else "")
            for o in k["not_installed"]
        ]
    for device, count in sorted(k.get("waiting_for_device", {}).items()):
        lines.append(
            f"waiting for device {device} (missing or down): {count} routes, installed when it comes up"
        )
    repairs = ", ".join(f"{cause} {n}" for cause, n in k["repairs"].items() if n)
    lines.append(f"repairs: {repairs or 'none'}")
    deferral = k["selection_deferral"]
    if not deferral["done"]:
        waiting = " ".join(deferral["waiting_for"])
        lines.append(f"selection deferral: waiting for end-of-rib from {waiting}")
    if deferral["stale_routes_wait_for"] and k["stale_from_earlier_run"]:
        waiting = " ".join(deferral["stale_routes_wait_for"])
        lines.append(f"routes of an earlier run kept until end-of-rib from {waiting}")
    return "\n".join(lines)


def render_status(s: dict[str, Any]) -> str:
    ex = s["exabgp"]
    lines = [
        f"bgpd {s['version']} (ExaBGP {s['exabgp_version']})",
        f"node {s['node']}, router id {s['router_id']}, AS {s['asn']}, role {s['role']}"
        + (f", cluster id {s['cluster_id']}" if s["cluster_id"] else ""),
        f"up since {_when(s['started'])} ({s['uptime_seconds']:.0f} s), config {s['config']}",
        f"exabgp pid {ex['pid']}, {'running' if ex['alive'] else 'not running'}, restarts {ex['restarts']}",
        f"sessions {s['sessions']['established']}/{s['sessions']['configured']} established",
        f"routes: {s['routes']['paths']} paths, {s['routes']['installed']} installed, "
        f"{s['routes']['announced']} announced"
        + (f" ({', '.join(s['routes']['families'])})" if s["routes"].get("families") else ""),
    ]
    ds = s.get("datastore")
    if ds:
        where = f"datastore {ds['type']} {', '.join(ds['endpoints'])}"
        if ds["up"]:
            lines.append(
                f"{where}: up since {_when(ds['since'])}, revision {ds['revision']} "
                f"(applied {ds['applied_revision']}), {ds['records']} records, {ds['resyncs']} resyncs"
            )
        else:
            lines.append(
                f"{where}: DOWN since {_when(ds['since'])}: {ds['reason']}; routing on the last known state "
                f"(revision {ds['applied_revision']})"
            )
        if ds["error"]:
            lines.append(f"datastore gives no configuration for this node: {ds['error']}")
        lines.extend(f"datastore problem: {p}" for p in ds["problems"])
    last = s.get("last_reload")
    if last and not last.get("ok"):
        lines.append(f"last reload failed: {last['message']}")
    return "\n".join(lines)


def render_config(c: dict[str, Any]) -> str:
    if c["from_datastore"]:
        where = f"derived from the datastore (revision {c['revision']}) and the local sections of"
    else:
        where = "from"
    return f"# configuration in effect, {where} {c['source']}\n{c['text']}".rstrip("\n")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="bgpctl", description="control and inspect a running bgpd")
    where = p.add_mutually_exclusive_group()
    where.add_argument("-s", "--socket", help=f"control socket (default {DEFAULT_SOCKET})")
    where.add_argument("-c", "--config", help="take the control socket from this bgpd config")
    sub = p.add_subparsers(dest="command", required=True)
    show = sub.add_parser("show", help="show peers, routes, kernel routes, status or the config in effect")
    show.add_argument("what", choices=["peers", "routes", "kernel", "status", "config"], help="what to show")
    show.add_argument("prefix", nargs="?", help="with `routes`: one prefix")
    family = show.add_mutually_exclusive_group()
    family.add_argument("-4", dest="family", action="store_const", const=4, help="IPv4 routes only")
    family.add_argument("-6", dest="family", action="store_const", const=6, help="IPv6 routes only")
    show.add_argument("--json", action="store_true")
    reload = sub.add_parser("reload", help="re-read the config file (as SIGHUP)")
    reload.add_argument("--json", action="store_true")
    health = sub.add_parser("health", help="liveness/readiness probe (exit 0 = pass)")
    kind = health.add_mutually_exclusive_group(required=True)
    kind.add_argument("--live", action="store_true")
    kind.add_argument("--ready", action="store_true")
    health.add_argument("--json", action="store_true")
    return p


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; `show routes -6 PREFIX` as well as `show routes PREFIX -6` (argparse alone leaves
    a positional that follows an option unassigned, and subcommands rule out its intermixed parsing)."""
    p = parser()
    args, extra = p.parse_known_args(argv)
    lone = len(extra) == 1 and not extra[0].startswith("-")
    if lone and args.command == "show" and args.prefix is None:
        args.prefix, extra = extra[0], []
    if extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _socket_path(args: argparse.Namespace) -> str:
    if args.socket:
        return str(args.socket)
    if args.config:
        from bgpd import config as config_mod  # only here: plain `bgpctl -s` needs nothing beyond stdlib

        try:
            path, error = config_mod.control_socket_of(args.config)
        except config_mod.ConfigError as exc:
            raise CtlError(str(exc)) from None
        if error is not None and not os.path.exists(path):
            raise CtlError(str(error))  # no daemon to ask: the config's own error says what is wrong
        return path
    return DEFAULT_SOCKET


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    return guard("bgpctl", lambda: _command(args), expected=(CtlError,))


RENDERERS: dict[str, Callable[[Any], str]] = {
    "peers": render_peers,
    "routes": render_routes,
    "kernel": render_kernel,
    "status": render_status,
    "config": render_config,
}


def _command(args: argparse.Namespace) -> int:
    """One parsed command line: its exit code; CtlError for what the user must hear about."""
    if args.command == "show":
        if args.prefix and args.what != "routes":
            raise CtlError(f"`show {args.what}` takes no prefix")
        if args.family and args.what not in ("routes", "kernel"):
            raise CtlError(f"`show {args.what}` takes no -{args.family} (only routes and kernel do)")
        call: dict[str, Any] = {}
        if args.prefix:
            check_prefix(args.prefix, args.family)
            call["prefix"] = args.prefix
        if args.family:
            call["family"] = args.family
        result = request(_socket_path(args), args.what, call or None)
        print(json.dumps(result, indent=1) if args.json else RENDERERS[args.what](result))
        return 0
    if args.command == "reload":
        result = request(_socket_path(args), "reload")
        if args.json:
            print(json.dumps(result, indent=1))
        elif not result["ok"]:
            raise CtlError(f"reload refused: {result['message']}")
        else:
            print(result["message"])
        return 0 if result["ok"] else 1
    result = request(_socket_path(args), "live" if args.live else "ready", timeout=5.0)
    print(json.dumps(result) if args.json else f"{'ok' if result['ok'] else 'FAIL'}: {result['reason']}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
