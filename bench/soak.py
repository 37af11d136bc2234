"""The soak run (issue 14): three bgpd hosts in a full iBGP mesh under a seeded random churn for a given
time; resource figures sampled from /proc; at the end every host's kernel checked against its RIB.

    python -m bench.soak --duration SECONDS --results DIR [--seed N] [--workdir DIR]

The churn runs in rounds of `Params.round_s` seconds; every round has the same mix (so CPU per minute
should stay the same), its times and targets drawn from `random.Random(seed)`:

- on every host: a bulk batch of `bulk` workload /32s added with one `ip -batch` and withdrawn later in
  the round (as Felix programs many pods at once); `singles` single /32s toggled with `ip route`; with
  probability `block_p` one of its two blackhole /26 blocks (proto 80, Felix's IPAM blocks) toggled;
- one session flap, the kinds in turn (seeded order), on a random host:
  `link`   - the host's underlay veth (eth0) down for `link_down_s` (> the 6 s hold time, so both ends
             drop the sessions; the kernel flushes the routes through eth0) and up again;
  `peer`   - the host's config rewritten without one mesh peer and `bgpctl reload`ed (the session goes
             down and its routes are withdrawn), put back `peer_off_s` later;
  `exabgp` - ExaBGP (bgpd's child) killed by pid with SIGKILL: bgpd restarts it and the sessions re-form;
  `sighup` - SIGHUP to bgpd (a reload of an unchanged config: nothing may flap).

Each round ends with a checkpoint: wait (deadline `settle_timeout`) until every session is Established on
every host, then sample every host's bgpd tree (`bench/soakstats.py`). A first round (the warm-up) takes
the processes to their high-water mark; its checkpoint is the baseline. After the last round: wait (deadline
`converge_timeout`) until on every host the kernel's proto-bird routes (`ip -j route`, main table) equal
what bgpd says it installed (`bgpctl show kernel --json`: owned; `show routes --json`: installed), equal
what the two other hosts announce (their `announced`, next hop their address) and each host announces
exactly the workloads and blocks the soak left on it; then the final sample and the verdict.

Results: DIR/soak-DATE.json (everything, every sample) and DIR/soak-DATE.md (a short table).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from ipaddress import ip_network
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from bgpd import ctl
from bgpd.lab import netns

from . import report, soakstats
from .topo import ASN, POOL, BenchError, Host, Topology

HOSTS = (("hA", 10), ("hB", 11), ("hC", 12))
HOLD_TIME = 6  # keepalive every 2 s; a link down for 8 s drops the sessions at both ends
GRACEFUL_RESTART = 5  # a flapped peer's routes are kept (stale) for 5 s at most
FLAP_KINDS = ("link", "peer", "exabgp", "sighup")
DIFF_LIMIT = 20  # entries of a mismatch kept in the result
Event = tuple[float, str, Callable[[], None]]  # seconds into the round, counter name, action


@dataclass
class Params:
    """The churn's shape (the same for the CI run and the 30-minute soak; only the duration differs)."""

    round_s: float = 30.0
    bulk: int = 1000  # /32s a host adds with one ip -batch and withdraws later in every round
    singles: int = 12  # single /32 toggles per host per round
    block_p: float = 0.35  # chance per host per round of toggling one of its blocks
    link_down_s: float = 8.0
    peer_off_s: float = 5.0
    settle_timeout: float = 90.0
    converge_timeout: float = 120.0


def _norm(prefix: str) -> str:
    """'10.30.0.1' (as ip prints a host route) or '10.30.0.1/32' -> '10.30.0.1/32'."""
    return str(ip_network(prefix))


@dataclass
class HostState:
    """What the soak left on one host: the routes it must announce."""

    index: int
    singles: set[str] = field(default_factory=set)
    blocks: set[str] = field(default_factory=set)

    def single_slot(self, k: int) -> str:
        return f"10.{30 + self.index}.100.{k + 1}/32"

    def bulk_lines(self, op: str, n: int) -> str:
        base = (10 << 24) | ((30 + self.index) << 16)
        out = []
        for k in range(n):
            a = base + k
            p = f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}/32"
            out.append(f"route add {p} dev cali0 proto boot scope link" if op == "add" else f"route del {p}")
        return "\n".join(out) + "\n"

    def block(self, k: int) -> str:
        return f"10.{40 + self.index}.{k}.0/26"

    def announced(self) -> set[str]:
        return self.singles | self.blocks


class Soak:
    def __init__(self, topo: Topology, seed: int, params: Params, log: Callable[[str], None]) -> None:
        self.topo = topo
        self.rng = random.Random(seed)
        self.p = params
        self.log = log
        self.hosts: list[Host] = []
        self.state: dict[str, HostState] = {}
        self.events: Counter[str] = Counter()
        kinds = list(FLAP_KINDS)
        self.rng.shuffle(kinds)
        self.kinds = kinds

    # --- set-up ------------------------------------------------------------------------------------------
    def config(self, host: Host, without: Host | None = None) -> dict[str, Any]:
        nodes = [h.address for h in self.hosts if h is not without]
        return {
            "node": {"name": host.name, "address": host.address, "asn": ASN},
            "bgp": {
                "hold_time": HOLD_TIME,
                "graceful_restart": GRACEFUL_RESTART,
                "select_defer_time": 10,
                "mesh": {"enabled": True, "nodes": nodes},
            },
            "pools": [{"cidr": POOL}],
            "export": {"protocols": ["boot", 80], "interfaces": ["cali*"]},
            "kernel": {"protocol": "bird", "table": "main", "stale_timeout": 10},
        }

    def write_config(self, host: Host, cfg: dict[str, Any]) -> None:
        """As `Topology.start_bgpd` writes it (same runtime section: a reload may not change it)."""
        cfg = {**cfg, "runtime": {"dir": str(host.workdir / "run"), "log_level": "info"}}
        (host.workdir / "bgpd.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    def start(self) -> None:
        for i, (name, octet) in enumerate(HOSTS):
            self.hosts.append(self.topo.host(name, octet))
            self.state[name] = HostState(i)
        for host in self.hosts:
            self.topo.start_bgpd(host, self.config(host))
        self.settle()

    # --- the control socket ------------------------------------------------------------------------------
    def ctl(self, host: Host, command: str, args: dict[str, Any] | None = None) -> Any:
        return ctl.request(str(host.workdir / "run" / "bgpd.ctl"), command, args)

    def sessions_up(self) -> bool:
        self.topo.check_alive()
        try:
            return all(
                len(peers) == len(self.hosts) - 1 and all(p["state"] == "up" for p in peers)
                for peers in (self.ctl(h, "peers") for h in self.hosts)
            )
        except ctl.CtlError:
            return False  # the daemon is busy restarting ExaBGP or not listening yet

    def settle(self) -> float:
        t0 = time.monotonic()
        netns.wait_for(self.sessions_up, self.p.settle_timeout, "every mesh session Established", 0.25)
        return time.monotonic() - t0

    # --- churn -------------------------------------------------------------------------------------------
    def bulk(self, host: Host, op: str) -> None:
        netns.ip("-batch", "-", ns=host.ns, stdin=self.state[host.name].bulk_lines(op, self.p.bulk))

    def single(self, host: Host, k: int) -> None:
        st = self.state[host.name]
        prefix = st.single_slot(k)
        if prefix in st.singles:
            host.ip("route", "del", prefix, "dev", "cali0")
            st.singles.discard(prefix)
        else:
            host.ip("route", "add", prefix, "dev", "cali0", "proto", "boot", "scope", "link")
            st.singles.add(prefix)

    def toggle_block(self, host: Host, k: int) -> None:
        st = self.state[host.name]
        prefix = st.block(k)
        if prefix in st.blocks:
            host.ip("route", "del", "blackhole", prefix, "proto", "80")
            st.blocks.discard(prefix)
        else:
            host.ip("route", "add", "blackhole", prefix, "proto", "80")
            st.blocks.add(prefix)

    def link(self, host: Host, state: str) -> None:
        host.ip("link", "set", "eth0", state)

    def reload(self, host: Host, without: Host | None) -> None:
        self.write_config(host, self.config(host, without))
        result = self.ctl(host, "reload")
        if not result.get("ok"):
            raise BenchError(f"reload on {host.name} refused: {result.get('message')}")

    def kill_exabgp(self, host: Host) -> None:
        pid = host.exabgp_pid()
        if pid is None:
            raise BenchError(f"no ExaBGP under bgpd on {host.name}")
        os.kill(pid, signal.SIGKILL)  # bgpd's child, started by the bgpd we started

    def sighup(self, host: Host) -> None:
        assert host.daemon is not None
        host.daemon.signal(signal.SIGHUP)

    def schedule(self, r: int) -> list[Event]:
        """Round r's events: (seconds into the round, counter name, action); the same mix every round."""
        rng, p, R = self.rng, self.p, self.p.round_s
        ev: list[Event] = []
        for host in self.hosts:
            ev.append((rng.uniform(0, 0.3 * R), "bulk_add", partial(self.bulk, host, "add")))
            ev.append((rng.uniform(0.5 * R, 0.75 * R), "bulk_del", partial(self.bulk, host, "del")))
            for _ in range(p.singles):
                ev.append((rng.uniform(0, 0.9 * R), "single", partial(self.single, host, rng.randrange(250))))
            if rng.random() < p.block_p:
                ev.append(
                    (rng.uniform(0, 0.9 * R), "block", partial(self.toggle_block, host, rng.randrange(2)))
                )
        kind = self.kinds[r % len(self.kinds)]
        host = rng.choice(self.hosts)
        if kind == "link":
            t = rng.uniform(0.05 * R, 0.9 * R - p.link_down_s)
            ev.append((t, "flap_link", partial(self.link, host, "down")))
            ev.append((t + p.link_down_s, "link_up", partial(self.link, host, "up")))
        elif kind == "peer":
            t = rng.uniform(0.05 * R, 0.9 * R - p.peer_off_s)
            peer = rng.choice([h for h in self.hosts if h is not host])
            ev.append((t, "flap_peer_reload", partial(self.reload, host, peer)))
            ev.append((t + p.peer_off_s, "peer_restore", partial(self.reload, host, None)))
        elif kind == "exabgp":
            ev.append((rng.uniform(0.05 * R, 0.9 * R), "flap_exabgp_kill", partial(self.kill_exabgp, host)))
        else:
            ev.append((rng.uniform(0.05 * R, 0.9 * R), "sighup", partial(self.sighup, host)))
        return sorted(ev, key=lambda e: e[0])

    def round(self, r: int) -> None:
        t0 = time.monotonic()
        for offset, name, action in self.schedule(r):
            delay = t0 + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the schedule's own clock, not a wait for a result
            action()
            self.events[name] += 1
            self.topo.check_alive()

    def sample(self) -> dict[str, dict[str, Any]]:
        return {h.name: soakstats.sample(h) for h in self.hosts}

    # --- the end check -----------------------------------------------------------------------------------
    def check(self) -> dict[str, dict[str, Any]]:
        """Per host: does the kernel equal bgpd's RIB and the other hosts' announcements? With the diffs."""
        announced = {h.name: self.ctl(h, "kernel", {"family": 4})["announced"] for h in self.hosts}
        out: dict[str, dict[str, Any]] = {}
        for host in self.hosts:
            kview = self.ctl(host, "kernel", {"family": 4})
            rview = self.ctl(host, "routes", {"family": 4})
            kernel = {
                _norm(p): hops for p, hops in netns.next_hops_by_prefix(host.ns, "proto", "bird").items()
            }
            owned = {_norm(o["prefix"]): sorted(o["next_hops"]) for o in kview["owned"]}
            rib_installed = {
                _norm(r["prefix"]): sorted(r["installed"]) for r in rview if r["installed"] is not None
            }
            expected: dict[str, list[str]] = {}
            for other in self.hosts:
                if other is not host:
                    for p in announced[other.name]:
                        expected.setdefault(_norm(p), []).append(other.address)
            expected = {p: sorted(v) for p, v in expected.items()}
            model = self.state[host.name].announced()
            own = {_norm(p) for p in announced[host.name]}
            checks = {
                "kernel_vs_owned": _diff(kernel, owned),
                "owned_vs_routes_installed": _diff(owned, rib_installed),
                "kernel_vs_announced_by_others": _diff(kernel, expected),
                "announced_vs_soak": _diff({p: [] for p in own}, {p: [] for p in model}),
                "not_installed": [o["prefix"] for o in kview["not_installed"]][:DIFF_LIMIT],
            }
            match = not any(checks.values())
            out[host.name] = {"match": match, "routes": len(kernel), "announced": len(own), **checks}
        return out

    def converge(self) -> tuple[bool, float, dict[str, dict[str, Any]]]:
        t0 = time.monotonic()
        deadline = t0 + self.p.converge_timeout
        while True:
            self.topo.check_alive()
            try:
                ok = self.sessions_up()
                result = self.check() if ok else None
            except ctl.CtlError:
                result = None
            if result is not None and all(v["match"] for v in result.values()):
                return True, time.monotonic() - t0, result
            if time.monotonic() > deadline:
                return False, time.monotonic() - t0, result or self.check()
            time.sleep(0.5)


def _diff(a: dict[str, list[str]], b: dict[str, list[str]]) -> list[str]:
    """What differs between two prefix -> next hops maps: '+P' only in a, '-P' only in b, '~P a|b'."""
    out = [f"+{p} {a[p]}" for p in sorted(a.keys() - b.keys())]
    out += [f"-{p} {b[p]}" for p in sorted(b.keys() - a.keys())]
    out += [f"~{p} {a[p]}|{b[p]}" for p in sorted(a.keys() & b.keys()) if a[p] != b[p]]
    return out[:DIFF_LIMIT]


def _machine() -> str:
    m = report.machine()
    return f"{m.get('nproc')} × {m.get('cpu')}, {m.get('mem_gib', '?')} GiB, kernel {m.get('kernel')}"


def _log(text: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] soak: {text}\n")
    sys.stderr.flush()


def run(
    duration_s: float,
    results_dir: Path,
    seed: int = 1,
    workdir: Path | None = None,
    params: Params | None = None,
    log: Callable[[str], None] = _log,
) -> dict[str, Any]:
    """Build the mesh, warm up for one round, churn for at least `duration_s` seconds (whole rounds),
    converge, check and sample; write DIR/soak-DATE.json and .md; return the result dict:
    {"verdict": {"flat", "rss_flat", "fds_flat", "cpu_flat", "kernel_matches_rib", "daemons_alive",
    "hosts": {name: figures}, "tolerance"}, "final": {"converged", "converge_s", "hosts": {name: checks}},
    "samples": [...], "events": {...}, ...}. Raises BenchError/TimeoutError when the mesh cannot be built
    or a session never comes back within `settle_timeout` (a daemon exiting is a BenchError)."""
    params = params or Params()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = workdir or Path(f"/tmp/bgpdbench-soak-{stamp}")
    result: dict[str, Any] = {
        "scenario": "soak",
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": _machine(),
        "seed": seed,
        "duration_s": duration_s,
        "params": asdict(params),
        "workdir": str(workdir),
    }
    with Topology(workdir, "soak") as topo:
        result["namespace_prefix"] = topo.fabric.prefix
        soak = Soak(topo, seed, params, log)
        soak.start()
        pids = {h.name: h.daemon.pid for h in soak.hosts if h.daemon}
        log(f"mesh up; flap order {soak.kinds}; warm-up round")
        soak.round(0)
        soak.settle()
        baseline = soak.sample()
        t_base = time.monotonic()
        samples = [{"t": 0.0, "round": 0, "hosts": baseline}]
        r = 0
        while time.monotonic() - t_base < duration_s:
            r += 1
            soak.round(r)
            settle_s = soak.settle()
            now = soak.sample()
            samples.append(
                {"t": round(time.monotonic() - t_base, 2), "round": r, "settle_s": settle_s, "hosts": now}
            )
            log(
                f"round {r} at {time.monotonic() - t_base:.0f} s: "
                + ", ".join(
                    f"{n} {s['rss_total'] / soakstats.MIB:.1f} MiB {sum(s['fds'].values())} fds "
                    f"{s['cpu_total_s']:.1f} s"
                    for n, s in now.items()
                )
            )
        churn_s = time.monotonic() - t_base
        converged, converge_s, hosts = soak.converge()
        final = soak.sample()
        if converged:
            # a connection of the last reconnect may still be closing: fds settle within seconds
            with contextlib.suppress(TimeoutError):
                netns.wait_for(
                    lambda: all(soak.sample()[n]["fds"] == baseline[n]["fds"] for n in baseline),
                    15.0,
                    "fds back at the baseline",
                    0.5,
                )
            final = soak.sample()
        alive = all(
            h.daemon is not None and h.daemon.alive() and h.daemon.pid == pids[h.name] for h in soak.hosts
        )
        status = {h.name: soak.ctl(h, "status") for h in soak.hosts} if alive else {}
    verdict = soakstats.verdict(samples, final, baseline)
    verdict["kernel_matches_rib"] = converged
    verdict["daemons_alive"] = alive
    verdict["flat"] = all(verdict[k] for k in ("rss_flat", "fds_flat", "kernel_matches_rib", "daemons_alive"))
    result.update(
        {
            "rounds": r,
            "churn_s": round(churn_s, 1),
            "events": dict(sorted(soak.events.items())),
            # routes added or removed on the three hosts during the measured rounds and the warm-up; each
            # reaches the two other hosts (received, decided, installed or removed there)
            "route_changes": params.bulk * (soak.events["bulk_add"] + soak.events["bulk_del"])
            + soak.events["single"]
            + soak.events["block"],
            "exabgp_restarts": {n: s["exabgp"]["restarts"] for n, s in status.items()},
            "final": {"converged": converged, "converge_s": round(converge_s, 2), "hosts": hosts},
            "verdict": verdict,
            "samples": [
                *samples,
                {"t": round(time.monotonic() - t_base, 2), "round": "final", "hosts": final},
            ],
        }
    )
    results_dir.mkdir(parents=True, exist_ok=True)
    jpath, mpath = results_dir / f"soak-{stamp}.json", results_dir / f"soak-{stamp}.md"
    jpath.write_text(json.dumps(result, indent=1) + "\n")
    mpath.write_text(soakstats.table(result))
    result["files"] = [str(jpath), str(mpath)]
    return result


class Interrupted(BaseException):
    pass


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=_positive, required=True, help="seconds of churn after the warm-up")
    p.add_argument("--results", type=Path, required=True, help="directory for soak-DATE.json and .md")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, help="configs and logs (default /tmp/bgpdbench-soak-DATE)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if os.geteuid() != 0:
        print("bench.soak: needs root (network namespaces)", file=sys.stderr)
        return 1
    if shutil.which("ip") is None:
        print("bench.soak: iproute2's ip not found", file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _on_signal)
    try:
        result = run(args.duration, args.results, args.seed, args.workdir)
    except (Interrupted, KeyboardInterrupt) as exc:
        print(f"bench.soak: interrupted ({exc}); namespaces removed", file=sys.stderr)
        return 130
    except (BenchError, TimeoutError, netns.CommandError, ctl.CtlError, OSError) as exc:
        print(f"bench.soak: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(soakstats.table(result))
    print(f"\nresults: {' '.join(result['files'])}")
    return 0 if result["verdict"]["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
