"""The scenarios: one function per (scenario, daemon, repetition), each on a freshly built topology.

Two-host scenarios (latency, bulk, memory): host A (192.168.100.10) plays Felix and injects workload
routes (``/32 dev cali0 scope link proto boot``); host B (192.168.100.11) receives. Both run the daemon
under test (bgpd or BIRD) in a two-node mesh. An agent (`bench/agent.py`) in each namespace injects single
routes (A) and watches B's routes of protocol bird inside the pool over netlink (B), with timestamps on
CLOCK_MONOTONIC. Before measuring, a probe route goes A -> B and back, so sessions are up and warm.

Blocks scenario (issue 10, run on request): host A adds N blackhole /32 blocks of protocol 80 (Felix's IPAM
blocks with `blockSize: 32`) with one `ip -batch`; B installs them. Meanwhile both daemons' control
sockets are asked for their status every 0.1 s, to show that they answer during the bulk change.

IPv6 (latency6, bulk10k6, bulk100k6): the same two-host scenarios with the `Family` V6 - hosts with an IPv6
address too (fd00:100::10, ::11), the mesh sessions between the IPv6 addresses only (Calico's bird6 mesh),
pool fd00:10::/48, workload routes `/128 dev cali0 proto boot` (no scope, as Felix's `ip -6 route`).

Reflector scenarios: 50 (reflector) or 200 (reflector200) BIRD clients, each announcing 200 prefixes,
around the reflector under test; `reflector_growth` compares the two sizes.

latency-active: the latency scenario with both hosts listing each other as active peers (`ACTIVE`).

The `floor` scenario (ExaBGP alone, run only on request) is in bench/floor.py.
"""

from __future__ import annotations

import logging
import random
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from bgpd import ctl
from bgpd.lab import netns

from . import birdconf, profiling
from .topo import ASN, POOL, POOL6, Agent, BenchError, BirdCli, Host, Topology, bird_cli, cpu_seconds

log = logging.getLogger("bench")

PROBE = "10.255.0.1/32"
READY_TIMEOUT = 90.0
BULK_BASE = int(IPv4Address("10.64.0.0"))
BLOCKS_BASE = int(IPv4Address("10.80.0.0"))  # inside POOL (10.0.0.0/8) for both daemons
BLOCKS_SIZES = (30_000, 100_000)
CTL_INTERVAL = 0.1  # seconds between two status requests to a daemon's control socket
CTL_TIMEOUT = 30.0
RR_ADDRESS = "192.168.100.2"
RR_CLUSTER_ID = "1.0.0.1"
MAX_CLIENTS = 240  # reflector clients are 192.168.100.10 on, one namespace each (the reflector is .2)


@dataclass(frozen=True)
class Family:
    """What the two-host scenarios (latency, bulk, memory) need to know about the address family they run
    in: the pool, the probe, where the latency and bulk prefixes come from, and the scenario name suffix."""

    version: int
    pool: str
    probe: str
    bulk_base: int
    suffix: str  # "" (latency, bulk10k ...) or "6" (latency6, bulk10k6 ...)

    @property
    def bits(self) -> int:
        return 128 if self.version == 6 else 32

    @property
    def profile_tag(self) -> str:
        """Added to py-spy profile names (add100000-ipv6-sender-bgpd.txt); nothing for IPv4."""
        return "-ipv6" if self.version == 6 else ""

    def host_prefix(self, value: int) -> str:
        return f"{IPv6Address(value) if self.version == 6 else IPv4Address(value)}/{self.bits}"

    def latency_prefix(self, i: int) -> str:
        """The i-th latency sample's route: 10.1.X.Y/32 (as always), fd00:10:0:1::I+1/128."""
        if self.version == 4:
            return f"10.1.{i // 200}.{i % 200 + 1}/32"
        return f"fd00:10:0:1::{i + 1:x}/128"

    def bulk_prefixes(self, n: int) -> list[str]:
        return [self.host_prefix(self.bulk_base + i) for i in range(n)]

    def route_line(self, op: str, prefix: str) -> str:
        """One `ip -batch` line as Felix programs a workload route (IPv6 routes have no scope)."""
        if op == "add":
            scope = "" if self.version == 6 else " scope link"
            return f"route add {prefix} dev cali0 proto boot{scope}\n"
        return f"route del {prefix} dev cali0\n"


V4 = Family(4, POOL, PROBE, BULK_BASE, "")
# IPv6 bulk routes from fd00:10:0:64::1 (::0 of a /64 is its subnet-router anycast address)
V6 = Family(6, POOL6, "fd00:10:0:ff::1/128", int(IPv6Address("fd00:10:0:64::1")), "6")
FAMILIES = {4: V4, 6: V6}


@dataclass
class Settings:
    workdir: Path
    latency_samples: int = 25
    idle_seconds: float = 30.0
    bulk_timeout: float = 600.0
    reflector_clients: int = 50
    reflector_routes: int = 200
    reflector_large_clients: int = 200  # scenario reflector200
    reflector_large_routes: int = 200
    reflector_large_timeout: float = 1200.0
    reflector_timeout: float = 300.0
    log_level: str = "info"
    profile_dir: Path | None = None
    # how host B's bgpd is started instead of `-m bgpd` (bench/memtrace.py: under tracemalloc)
    receiver_launcher: tuple[str, ...] = ("-m", "bgpd")


# --------------------------------------------------------------------------------------------- two hosts
@dataclass
class Pair:
    topo: Topology
    a: Host
    b: Host
    agent_a: Agent
    agent_b: Agent
    ready_s: float


MESH = "mesh"  # the hosts peer in bgpd's node-to-node mesh: the lower address waits passively (as Calico)
ACTIVE = "active"  # each host lists the other in `bgp.peers` with `passive: false`: both connect (collision)
PEERINGS = (MESH, ACTIVE)


def bgpd_config(host: Host, mesh: list[str], family: Family = V4, peering: str = MESH) -> dict[str, Any]:
    """As tests/e2e: a full mesh, one pool, Felix's protocols, routes installed as proto bird.

    IPv6: `node.address6` set, the pool IPv6, and the mesh lists the two hosts' IPv6 addresses (`mesh`) and
    only this host's own IPv4 address (bgpd requires it in an enabled mesh): a peering exists in a family
    only when both nodes are listed in it, so the hosts peer over IPv6 alone, as Calico's bird6 mesh.

    `peering` ACTIVE (scenario latency-active): no mesh; `bgp.peers` holds the other address of `mesh`
    with `passive: false`, so both hosts open a connection and BGP's collision detection (RFC 4271
    section 6.8) keeps one. ValueError for another `peering`."""
    if peering not in PEERINGS:
        raise ValueError(f"unknown peering {peering!r} (choose from {', '.join(PEERINGS)})")
    node: dict[str, Any] = {"name": host.name, "address": host.address, "asn": ASN}
    nodes = mesh
    if family.version == 6:
        node = {"name": host.name, "address": host.address, "address6": host.address6, "asn": ASN}
        nodes = [host.address, *mesh]
    bgp: dict[str, Any] = {"mesh": {"enabled": True, "nodes": nodes}}
    if peering == ACTIVE:
        own = _session_address(host, family)
        bgp = {"peers": [{"address": a, "asn": ASN, "passive": False} for a in mesh if a != own]}
    return {
        "node": node,
        "bgp": bgp,
        "pools": [{"cidr": family.pool}],
        "export": {"protocols": ["boot", 80], "interfaces": ["cali*"]},
        "kernel": {"protocol": "bird", "table": "main"},
    }


def _session_address(host: Host, family: Family) -> str:
    return host.address6 if family.version == 6 else host.address


def build_pair(settings: Settings, daemon: str, tag: str, family: Family = V4, peering: str = MESH) -> Pair:
    """Hosts A and B running `daemon`, peering as `peering` says (MESH: the lower address passive; ACTIVE:
    both connect), with their agents; returns once a probe route went A -> B and back."""
    topo = Topology(settings.workdir / tag, tag)
    try:
        v6 = family.version == 6
        a = topo.host("hA", 10, ipv6=v6)
        b = topo.host("hB", 11, ipv6=v6)
        mesh = [_session_address(a, family), _session_address(b, family)]
        t0 = time.monotonic()
        for host, peer in ((b, a), (a, b)):  # the receiver first: it is the passive side in the mesh
            if daemon == "bgpd":
                launcher = settings.receiver_launcher if host is b else ("-m", "bgpd")
                topo.start_bgpd(host, bgpd_config(host, mesh, family, peering), settings.log_level, launcher)
            else:
                own, other = _session_address(host, family), _session_address(peer, family)
                conf = birdconf.host(
                    own, [other], family.pool, ASN, router_id=host.address, both_active=peering == ACTIVE
                )
                topo.start_bird(host, conf)
        agent_a = topo.agent(a, family.pool)
        agent_b = topo.agent(b, family.pool)
        # probe: a route A -> B and its withdrawal, so both sessions are established and warm
        probe = family.probe
        deadline = time.monotonic() + READY_TIMEOUT
        agent_b.wait("add", probe)
        agent_a.change("add", probe)
        while True:
            topo.check_alive()
            try:
                agent_b.seen("add", probe, 1.0)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"{daemon}: probe route never reached host B within {READY_TIMEOUT:.0f}s; "
                        f"logs in {topo.workdir}"
                    ) from None
        ready = time.monotonic() - t0
        agent_b.wait("del", probe)
        agent_a.change("del", probe)
        agent_b.seen("del", probe, 30.0)
        return Pair(topo, a, b, agent_a, agent_b, ready)
    except BaseException:
        topo.close()
        raise


def latency_figures(adds: list[float], dels: list[float], lost: int) -> dict[str, Any]:
    """p50/p90 of add and delete samples (ms), the samples themselves, and how many were lost."""
    return {
        "add_p50_ms": percentile(adds, 50),
        "add_p90_ms": percentile(adds, 90),
        "del_p50_ms": percentile(dels, 50),
        "del_p90_ms": percentile(dels, 90),
        "samples_add_ms": [round(x, 3) for x in adds],
        "samples_del_ms": [round(x, 3) for x in dels],
        "lost": lost,
    }


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (q in 0..100)."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def session_opener(ss_output: str, hosts: dict[str, str]) -> str:
    """Which host opened the BGP connection(s) `ss -tnH state established` lists: the name in `hosts`
    (address -> name) of the side that connected to the other's port 179, ",".join of them if there are
    several, "" if none. With two active peers, this is whose connection survived the collision (RFC 4271
    section 6.8)."""
    openers = []
    for line in ss_output.splitlines():
        words = line.split()
        if len(words) < 4:
            continue
        local, remote = words[-2], words[-1]
        for acceptor, opener in ((local, remote), (remote, local)):
            if acceptor.rpartition(":")[2] == "179":  # the side on port 179 accepted, the other opened
                address = opener.rpartition(":")[0].strip("[]")
                openers.append(hosts.get(address, address))
                break
    return ",".join(sorted(openers))


def _opener(pair: Pair, family: Family) -> str:
    out = netns.ns_exec(pair.a.ns, "ss", "-tnH", "state", "established", check=False).stdout
    hosts = {_session_address(h, family): h.name for h in (pair.a, pair.b)}
    return session_opener(out, hosts)


def run_latency(
    settings: Settings, daemon: str, rep: int, family: Family = V4, peering: str = MESH
) -> dict[str, Any]:
    """`settings.latency_samples` single routes added on A, then deleted: the time until B installs
    (removes) each, in ms. `peering` ACTIVE: both hosts connect (scenario latency-active)."""
    name = f"latency{family.suffix}" + ("" if peering == MESH else f"-{peering}")
    pair = build_pair(settings, daemon, f"{name}-{daemon}-{rep}", family, peering)
    try:
        opened_by = _opener(pair, family)
        rng = random.Random(rep)
        adds: list[float] = []
        dels: list[float] = []
        lost = 0
        for i in range(settings.latency_samples):
            prefix = family.latency_prefix(i)
            for op, out in (("add", adds), ("del", dels)):
                time.sleep(rng.uniform(0.05, 0.15))  # off any timer's phase
                pair.agent_b.wait(op, prefix)
                t_inject = pair.agent_a.change(op, prefix)
                try:
                    t_seen = pair.agent_b.seen(op, prefix, 10.0)
                except TimeoutError:
                    lost += 1
                    pair.topo.check_alive()
                    continue
                out.append((t_seen - t_inject) * 1000)
        return {
            **latency_figures(adds, dels, lost),
            "ready_s": pair.ready_s,
            "family": family.version,
            "peering": peering,
            # the host whose TCP connection carries the session, before and after the samples
            "session_opened_by": opened_by,
            "session_opened_by_after": _opener(pair, family),
        }
    finally:
        pair.topo.close()


# --------------------------------------------------------------------------------------------- bulk
def bulk_prefixes(n: int, family: Family = V4) -> list[str]:
    """n host routes from 10.64.0.0 (IPv4) or fd00:10:0:64::1 (IPv6)."""
    return family.bulk_prefixes(n)


def batch_files(settings: Settings, n: int, family: Family = V4) -> tuple[Path, Path]:
    add = settings.workdir / f"batch-add{family.suffix}-{n}.txt"
    delete = settings.workdir / f"batch-del{family.suffix}-{n}.txt"
    if not add.exists() or not delete.exists():
        settings.workdir.mkdir(parents=True, exist_ok=True)
        prefixes = bulk_prefixes(n, family)
        add.write_text("".join(family.route_line("add", p) for p in prefixes))
        delete.write_text("".join(family.route_line("del", p) for p in prefixes))
    return add, delete


def ip_batch(host: Host, path: Path) -> float:
    """`ip -n NS -batch FILE` (as Felix's bulk programming); returns its duration."""
    t0 = time.monotonic()
    proc = subprocess.run(
        ["ip", "-n", host.ns, "-batch", str(path)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise BenchError(f"ip -batch {path} in {host.ns}: {proc.stderr.strip()[:300]}")
    return time.monotonic() - t0


def _wait_count(pair: Pair, n: int, timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    while True:
        pair.topo.check_alive()
        try:
            return pair.agent_b.seen("count", n, min(5.0, max(deadline - time.monotonic(), 0.0)))
        except TimeoutError:
            if time.monotonic() >= deadline:
                got, _ = pair.agent_b.count()
                raise TimeoutError(f"{what}: {got} of {n} routes after {timeout:.0f}s") from None


OVERFLOW_MARKS = ("Kernel dropped some netlink messages", "route notifications lost")


def overflows(host: Host) -> int:
    """How often the daemon on `host` logged that the kernel dropped route notifications (BIRD then waits
    for its next scan, `scan time 2`; bgpd re-dumps at once)."""
    if host.daemon is None:
        return 0
    try:
        with open(host.daemon.log_path, errors="replace") as fh:
            return sum(1 for line in fh if any(m in line for m in OVERFLOW_MARKS))
    except OSError:
        return 0


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: round(v - before.get(k, 0.0), 2) for k, v in after.items()}


def _profile_targets(pair: Pair) -> dict[str, int | None]:
    return {
        "sender-bgpd": pair.a.daemon.pid if pair.a.daemon else None,
        "sender-exabgp": pair.a.exabgp_pid(),
        "receiver-exabgp": pair.b.exabgp_pid(),
        "receiver-bgpd": pair.b.daemon.pid if pair.b.daemon else None,
    }


def run_bulk(
    settings: Settings,
    daemon: str,
    rep: int,
    n: int,
    delete: bool = True,
    idle_seconds: float | None = None,
    profile: bool = False,
    family: Family = V4,
) -> dict[str, Any]:
    """Add n routes on A at once; time until all are installed on B; optionally idle CPU; then delete all.

    Also: RSS of B's daemon tree idle and with n routes, CPU seconds of both trees over each phase."""
    add_file, del_file = batch_files(settings, n, family)
    pair = build_pair(settings, daemon, f"bulk{n}{family.suffix}-{daemon}-{rep}", family)
    profiler = profiling.Profiler(settings.profile_dir) if profile and settings.profile_dir else None
    try:
        time.sleep(1.0)  # let the start-up settle before taking the idle footprint
        result: dict[str, Any] = {"n": n, "family": family.version, "ready_s": pair.ready_s}
        rss_idle = pair.b.rss()
        result["rss_idle_bytes"] = rss_idle
        result["rss_idle_receiver_by_process_bytes"] = pair.b.rss_by_process()
        result["sender_rss_idle_bytes"] = pair.a.rss()
        cpu_b0, cpu_a0 = pair.b.cpu(), pair.a.cpu()
        split_b0, split_a0 = pair.b.cpu_by_process(), pair.a.cpu_by_process()
        over0 = overflows(pair.a)
        pair.agent_b.wait("count", n)
        if profiler:
            profiler.start(_profile_targets(pair), f"add{n}{family.profile_tag}")
        t0 = time.monotonic()
        result["batch_add_s"] = ip_batch(pair.a, add_file)
        t_done = _wait_count(pair, n, settings.bulk_timeout, f"{daemon} bulk add {n}")
        result["add_s"] = t_done - t0
        result["sender_overflows_add"] = overflows(pair.a) - over0
        time.sleep(0.5)  # the receiver may still log/account after the last install
        if profiler:
            profiler.stop()
        cpu_b1, cpu_a1 = pair.b.cpu(), pair.a.cpu()
        result["cpu_add_receiver_s"] = cpu_b1 - cpu_b0
        result["cpu_add_sender_s"] = cpu_a1 - cpu_a0
        result["cpu_per_10k_receiver_s"] = (cpu_b1 - cpu_b0) * 10_000 / n
        result["cpu_per_10k_sender_s"] = (cpu_a1 - cpu_a0) * 10_000 / n
        result["cpu_add_receiver_by_process_s"] = _delta(pair.b.cpu_by_process(), split_b0)
        result["cpu_add_sender_by_process_s"] = _delta(pair.a.cpu_by_process(), split_a0)
        rss_full = pair.b.rss()
        result["rss_full_receiver_by_process_bytes"] = pair.b.rss_by_process()
        result["rss_full_sender_by_process_bytes"] = pair.a.rss_by_process()
        result["rss_full_bytes"] = rss_full
        result["sender_rss_full_bytes"] = pair.a.rss()
        result["bytes_per_route"] = (rss_full - rss_idle) / n
        if idle_seconds:
            time.sleep(2.0)
            c0, s0 = pair.b.cpu(), pair.a.cpu()
            split_b0, split_a0 = pair.b.cpu_by_process(), pair.a.cpu_by_process()
            time.sleep(idle_seconds)
            result["idle_cpu_receiver_s"] = pair.b.cpu() - c0
            result["idle_cpu_sender_s"] = pair.a.cpu() - s0
            result["idle_cpu_receiver_by_process_s"] = _delta(pair.b.cpu_by_process(), split_b0)
            result["idle_cpu_sender_by_process_s"] = _delta(pair.a.cpu_by_process(), split_a0)
            result["idle_window_s"] = idle_seconds
        if delete:
            pair.agent_b.wait("count", 0)
            if profiler:
                profiler.start(_profile_targets(pair), f"del{n}{family.profile_tag}")
            c0, s0 = pair.b.cpu(), pair.a.cpu()
            over0 = overflows(pair.a)
            t0 = time.monotonic()
            result["batch_del_s"] = ip_batch(pair.a, del_file)
            t_done = _wait_count(pair, 0, settings.bulk_timeout, f"{daemon} bulk delete {n}")
            result["del_s"] = t_done - t0
            result["sender_overflows_del"] = overflows(pair.a) - over0
            if profiler:
                profiler.stop()
            result["cpu_del_receiver_s"] = pair.b.cpu() - c0
            result["cpu_del_sender_s"] = pair.a.cpu() - s0
        result["resyncs"] = pair.agent_b.count()[1]
        return result
    finally:
        if profiler:
            profiler.stop()
        pair.topo.close()


# --------------------------------------------------------------------------------------------- blocks
def block_prefixes(n: int) -> list[str]:
    """n /32 blocks from 10.80.0.0 (100,000 reach 10.81.134.159): every workload address a block."""
    return [f"{IPv4Address(BLOCKS_BASE + i)}/32" for i in range(n)]


def block_files(settings: Settings, n: int) -> tuple[Path, Path]:
    """`ip -batch` files adding and deleting n blackhole /32 blocks of protocol 80, as Felix programs
    IPAM blocks (the daemons export blackhole routes of protocol 80 inside the pool)."""
    add = settings.workdir / f"batch-blocks-add-{n}.txt"
    delete = settings.workdir / f"batch-blocks-del-{n}.txt"
    if not add.exists() or not delete.exists():
        settings.workdir.mkdir(parents=True, exist_ok=True)
        prefixes = block_prefixes(n)
        add.write_text("".join(f"route add blackhole {p} proto 80\n" for p in prefixes))
        delete.write_text("".join(f"route del blackhole {p} proto 80\n" for p in prefixes))
    return add, delete


def control_socket(host: Host) -> Path:
    """bgpd's control socket (`runtime.dir` is HOST_WORKDIR/run, see Topology.start_bgpd)."""
    return host.workdir / "run" / "bgpd.ctl"


def ask_status(host: Host, timeout: float = CTL_TIMEOUT) -> None:
    """One status request over the daemon's control socket (`bgpctl show status`, `birdc show status`);
    raises if there is no answer within `timeout` seconds or the answer is an error."""
    if host.kind == "bgpd":
        result = ctl.request(str(control_socket(host)), "status", timeout=timeout)
        if not isinstance(result, dict) or "routes" not in result:
            raise BenchError(f"bgpd status: unexpected answer {result!r:.200}")
        return
    cli = BirdCli(host.bird_socket, timeout) if host.bird_socket else None
    if cli is None:
        raise BenchError(f"{host.name}: no BIRD control socket")
    try:
        reply = cli.command("show status")
    finally:
        cli.close()
    if not reply or not reply[-1].startswith("0013 "):  # 0013: "Daemon is up and running"
        raise BenchError(f"birdc show status: {reply[-1:]!r}")


class StatusPoller:
    """Asks a daemon for its status every CTL_INTERVAL seconds on a thread of its own (so a slow answer
    delays nothing else) and times each answer: does the control socket answer during a bulk change?"""

    def __init__(self, host: Host, interval: float = CTL_INTERVAL) -> None:
        self.host = host
        self.interval = interval
        self.times_ms: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"status-{host.name}", daemon=True)

    def __enter__(self) -> StatusPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(CTL_TIMEOUT + 5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                ask_status(self.host)
                self.times_ms.append((time.monotonic() - t0) * 1000)
            except (OSError, ctl.CtlError, BenchError) as exc:
                self.failures.append(str(exc)[:200])
            self._stop.wait(self.interval)

    def figures(self, prefix: str) -> dict[str, Any]:
        times = self.times_ms
        return {
            f"{prefix}_answers": len(times),
            f"{prefix}_failures": len(self.failures),
            f"{prefix}_max_ms": max(times) if times else float("nan"),
            f"{prefix}_p50_ms": percentile(times, 50),
            **({f"{prefix}_first_failure": self.failures[0]} if self.failures else {}),
        }


def run_blocks(settings: Settings, daemon: str, rep: int, n: int) -> dict[str, Any]:
    """Add n blackhole /32 blocks (protocol 80) on A in one `ip -batch`; time until all n are installed
    on B (protocol bird); then delete them in one batch; time until all are gone. Both daemons' control
    sockets are polled for their status throughout each phase."""
    add_file, del_file = block_files(settings, n)
    pair = build_pair(settings, daemon, f"blocks{n}-{daemon}-{rep}")
    try:
        time.sleep(1.0)  # let the start-up settle, as run_bulk does
        result: dict[str, Any] = {"n": n, "rep": rep, "ready_s": pair.ready_s}
        for phase, path, target in (("add", add_file, n), ("del", del_file, 0)):
            pair.agent_b.wait("count", target)
            cpu_b0, cpu_a0 = pair.b.cpu(), pair.a.cpu()
            over0 = overflows(pair.a)
            with StatusPoller(pair.a) as sender, StatusPoller(pair.b) as receiver:
                t0 = time.monotonic()
                result[f"batch_{phase}_s"] = ip_batch(pair.a, path)
                t_done = _wait_count(pair, target, settings.bulk_timeout, f"{daemon} blocks {phase} {n}")
            elapsed = t_done - t0
            result[f"{phase}_s"] = elapsed
            result[f"{phase}_us_per_route"] = elapsed * 1e6 / n
            result[f"sender_overflows_{phase}"] = overflows(pair.a) - over0
            result[f"cpu_{phase}_sender_s"] = pair.a.cpu() - cpu_a0
            result[f"cpu_{phase}_receiver_s"] = pair.b.cpu() - cpu_b0
            result.update(sender.figures(f"ctl_{phase}_sender"))
            result.update(receiver.figures(f"ctl_{phase}_receiver"))
        result["resyncs"] = pair.agent_b.count()[1]
        return result
    finally:
        pair.topo.close()


def blocks_growth(small: list[dict[str, Any]], large: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per repetition that has both sizes: time per route at the large size over the small one (1.0 =
    linear growth; a per-change scan of the table makes it large/small)."""
    by_rep = {r.get("rep"): r for r in small}
    out = []
    for big in large:
        little = by_rep.get(big.get("rep"))
        if little is None:
            continue
        entry: dict[str, Any] = {"rep": big.get("rep"), "sizes": [little["n"], big["n"]]}
        for phase in ("add", "del"):
            a, b = little.get(f"{phase}_us_per_route"), big.get(f"{phase}_us_per_route")
            if isinstance(a, float) and isinstance(b, float) and a > 0:
                entry[f"growth_{phase}"] = b / a
        out.append(entry)
    return out


# --------------------------------------------------------------------------------------------- reflector
def client_routes(index: int, count: int) -> list[str]:
    """`count` unique /26 prefixes for client `index`: 10.(100 + index / 100).x.y/26."""
    base = int(IPv4Address("10.100.0.0")) + index * count * 64
    return [f"{IPv4Address(base + i * 64)}/26" for i in range(count)]


def bgpd_reflector_config(clients: list[str]) -> dict[str, Any]:
    return {
        "node": {"name": "rr1", "address": RR_ADDRESS, "asn": ASN},
        "reflector": {"cluster_id": RR_CLUSTER_ID, "clients": clients},
        "pools": [{"cidr": POOL}],
        "kernel": {"install": False},
    }


def bgpd_reflector_available(settings: Settings) -> tuple[bool, str]:
    """Does the installed bgpd accept the `reflector` key? (`bgpd check -c` exits 2 if not.)"""
    import sys

    import yaml

    settings.workdir.mkdir(parents=True, exist_ok=True)
    path = settings.workdir / "rr-check.yaml"
    cfg = bgpd_reflector_config([f"192.168.100.{10 + i}" for i in range(settings.reflector_clients)])
    cfg["runtime"] = {"dir": str(settings.workdir / "rr-check-run")}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = subprocess.run(
        [sys.executable, "-m", "bgpd", "check", "-c", str(path)], capture_output=True, text=True, check=False
    )
    if proc.returncode == 0:
        return True, ""
    return False, (proc.stderr.strip() or proc.stdout.strip())[:300]


def _poll(clis: list[BirdCli], command: str) -> list[list[str]]:
    for cli in clis:
        cli.sock.sendall(command.encode() + b"\n")
    return [cli._reply() for cli in clis]


IMPORTED_COMMAND = "show protocols all reflector"


def imported_count(reply: list[str]) -> int:
    """The routes a client's session has imported, from BIRD's answer to IMPORTED_COMMAND (its channel's
    line '     Routes:         9800 imported, 200 exported, 9800 preferred'); -1 if there is none.

    A channel counter, constant time: `show route protocol reflector count` walks the client's table
    (2.9 ms per call with 39,800 routes here), which at 200 clients polled every 0.1 s kept most of a
    core busy beside the reflector under test."""
    for line in reply:
        text = line[5:] if line[:4].isdigit() and line[4:5] in ("-", " ") else line
        words = text.replace(",", " ").split()
        if len(words) > 2 and words[0] == "Routes:" and words[2] == "imported" and words[1].isdigit():
            return int(words[1])
    return -1


def run_reflector(
    settings: Settings, daemon: str, rep: int, profile: bool = False, large: bool = False
) -> dict[str, Any]:
    """BIRD clients around the reflector under test (`daemon`), each announcing its routes once all
    sessions are up; the time until every client holds every other client's routes, the reflector's CPU
    over that time and its RSS then. Size: `settings.reflector_clients` x `reflector_routes`, or with
    `large` (scenario reflector200) `reflector_large_clients` x `reflector_large_routes`. BenchError if
    the sessions do not come up, TimeoutError after `settings.reflector_timeout` seconds
    (`reflector_large_timeout` with `large`)."""
    if large:
        n_clients, n_routes = settings.reflector_large_clients, settings.reflector_large_routes
        timeout = settings.reflector_large_timeout
    else:
        n_clients, n_routes = settings.reflector_clients, settings.reflector_routes
        timeout = settings.reflector_timeout
    if not 2 <= n_clients <= MAX_CLIENTS:
        raise BenchError(f"reflector: {n_clients} clients; 2 to {MAX_CLIENTS} fit on the underlay /24")
    expected = (n_clients - 1) * n_routes
    name = "reflector200" if large else "reflector"
    topo = Topology(settings.workdir / f"{name}-{daemon}-{rep}", f"rr-{daemon}-{rep}")
    clis: list[BirdCli] = []
    profiler = profiling.Profiler(settings.profile_dir) if profile and settings.profile_dir else None
    try:
        t_build = time.monotonic()
        rr = topo.host("rr", 2, workload_dev=False)
        clients = [topo.host(f"c{i:02d}", 10 + i, workload_dev=False) for i in range(n_clients)]
        addresses = [c.address for c in clients]
        t_start = time.monotonic()
        build_s = t_start - t_build
        if daemon == "bgpd":
            topo.start_bgpd(rr, bgpd_reflector_config(addresses), settings.log_level)
        else:
            topo.start_bird(rr, birdconf.reflector(rr.address, addresses, POOL, ASN, RR_CLUSTER_ID))
        for i, c in enumerate(clients):
            topo.start_bird(c, birdconf.client(c.address, rr.address, client_routes(i, n_routes), POOL, ASN))
        # connect to every client's control socket
        deadline = time.monotonic() + 30.0
        for c in clients:
            while True:
                try:
                    clis.append(bird_cli(c))
                    break
                except OSError:
                    topo.check_alive()
                    if time.monotonic() > deadline:
                        raise BenchError(f"BIRD on {c.name} has no control socket") from None
                    time.sleep(0.1)
        # every client's session to the reflector established (a second more per 10 clients beyond 50)
        deadline = time.monotonic() + READY_TIMEOUT + max(0, n_clients - 50) / 10
        while True:
            topo.check_alive()
            replies = _poll(clis, "show protocols reflector")
            up = sum(1 for r in replies if any("Established" in line for line in r))
            if up == n_clients:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"{daemon} reflector: {up} of {n_clients} sessions established")
            time.sleep(0.2)
        ready = time.monotonic() - t_start
        time.sleep(1.0)
        cpu0 = rr.cpu()
        split0 = rr.cpu_by_process()
        client_pids = [c.daemon.pid for c in clients if c.daemon]  # `ip netns exec` execs bird: same pid
        clients_cpu0 = cpu_seconds(client_pids)
        if profiler:
            profiler.start(
                {"reflector-bgpd": rr.daemon.pid if rr.daemon else None, "reflector-exabgp": rr.exabgp_pid()},
                "reflector",
            )
        t0 = time.monotonic()
        for reply in _poll(clis, "enable workloads"):
            if not any("enabled" in line for line in reply):
                raise BenchError(f"enable workloads: {reply}")
        t_enabled = time.monotonic() - t0
        done: dict[int, float] = {}
        counts = [0] * n_clients
        deadline = t0 + timeout
        while len(done) < n_clients:
            topo.check_alive()
            todo = [i for i in range(n_clients) if i not in done]
            replies = _poll([clis[i] for i in todo], IMPORTED_COMMAND)
            now = time.monotonic()
            for i, reply in zip(todo, replies, strict=True):
                counts[i] = imported_count(reply)
                if counts[i] == expected:
                    done[i] = now - t0
            if len(done) == n_clients:
                break
            if now > deadline:
                raise TimeoutError(
                    f"{daemon} reflector: {len(done)} of {n_clients} clients converged after "
                    f"{timeout:.0f}s (routes per client min {min(counts)}, "
                    f"max {max(counts)}, expected {expected})"
                )
            time.sleep(0.1)
        converged = max(done.values())
        cpu1 = rr.cpu()
        split1 = rr.cpu_by_process()
        clients_cpu = cpu_seconds(client_pids) - clients_cpu0
        if profiler:
            profiler.stop()
        return {
            "converge_s": converged,
            "first_client_s": min(done.values()),
            "enable_s": t_enabled,
            "ready_s": ready,
            "reflector_cpu_s": cpu1 - cpu0,
            # by role: bgpd, exabgp, bridge (ExaBGP's API helper); bird
            "cpu_by_process_s": _delta(split1, split0),
            "reflector_rss_bytes": rr.rss(),
            # every client's BIRD together (receiving the routes, answering the polls), same window
            "clients_cpu_s": round(clients_cpu, 2),
            "build_s": build_s,
            "clients": n_clients,
            "routes_per_client": n_routes,
            "expected_per_client": expected,
        }
    finally:
        if profiler:
            profiler.stop()
        for cli in clis:
            cli.close()
        topo.close()


def routes_delivered(clients: int, routes: int) -> int:
    """Routes the reflector hands out until convergence: each client gets every other client's routes."""
    return clients * (clients - 1) * routes


def reflector_growth(small: list[dict[str, Any]], large: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """How the reflector's cost grows from the small (reflector) to the large (reflector200) scenario: the
    medians over the repetitions of each, large over small. `work_ratio` is the growth of the routes
    delivered (200 vs 50 clients of 200 routes: 16.2); `per_route_ratio` = convergence ratio / work ratio
    (1 = time linear in the routes delivered). One entry, or none if either side has no run."""
    if not small or not large:
        return []
    work = routes_delivered(large[0]["clients"], large[0]["routes_per_client"]) / routes_delivered(
        small[0]["clients"], small[0]["routes_per_client"]
    )
    entry: dict[str, Any] = {
        "sizes": [[r[0]["clients"], r[0]["routes_per_client"]] for r in (small, large)],
        "work_ratio": work,
    }
    for key, out in (("converge_s", "converge_ratio"), ("reflector_cpu_s", "cpu_ratio")):
        lo, hi = median_of([r[key] for r in small]), median_of([r[key] for r in large])
        if lo > 0:
            entry[out] = hi / lo
    if "converge_ratio" in entry:
        entry["per_route_ratio"] = entry["converge_ratio"] / work
    return [entry]


def median_of(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


Runner = Callable[[Settings, str, int], dict[str, Any]]
