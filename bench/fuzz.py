"""The malformed-UPDATE fuzz campaign (issue 14): cases from `bench.fuzzgrammar` sent by a raw BGP speaker
to a live bgpd, and after each one the checks that it did what RFC 7606 says.

Topology (namespaces `bgpdbench-<random>-…`, built with `bench.topo`, removed at the end, also on failure):
h0 (192.168.100.10, fd00:100::10) runs two `bench/rawbgp.py --reconnect` speakers, one iBGP session per
family; h1 (.11, ::11) runs bgpd, passive towards them, with two `bench/agent.py` route listeners (IPv4,
IPv6); h2 (.12, ::12) runs BIRD 2, the well-behaved peer, announcing `GOOD` routes per family that must stay
installed via h2 through the whole campaign.

One case (`Campaign.run_case`): the raw speaker announces the case's prefixes validly (`setup`) and the
harness waits until the kernel has them; then it sends the mutated message and right behind it a valid
"sentinel" UPDATE, and waits until the sentinel's route is in the kernel - on the same session, or, if the
session was reset, after the speaker reconnected and sent it again - so the effect of the mutated message is
settled without a sleep. Then it checks: bgpd alive; the session reset if and only if the case expects it;
each of the case's prefixes in the kernel if and only if the outcome installs it (so nothing from a bad
UPDATE is installed, and treat-as-withdraw removed the earlier path); the number of routes bgpd installed
in the family is the good peer's plus what the case allows (nothing else crept in, none of the good peer's
went); bgpd's counters moved as expected (`show peers`: the reject reason by one per prefix, a flap per
reset, nothing else); a reset came with a NOTIFICATION of the error code the case names. Every 50 cases
and at the end the good peer's routes are compared one by one with their next hops. Then the case's
routes are withdrawn and the count is back to the good peer's.

Output: `run(cases, results_dir)` returns (and writes as `fuzz.json` and `fuzz.md` in `results_dir`) counts
per observed outcome, per mutation kind and per expected outcome, the documented deviations, the
NOTIFICATIONs seen per kind, and every mismatch with its message in hex. `python -m bench.fuzz --cases N
--results DIR [--seed S] [--kinds a,b]`; exits 1 if any case mismatched.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from bgpd import ctl
from bgpd.lab import netns

from . import rawbgp as wire
from .fuzzgrammar import ACCEPTED, DISCARD, KINDS, RESET, SENTINEL4, SENTINEL6, TAW, Case, Context, generate
from .topo import ASN, Agent, BenchError, Host, Topology, close_all

RAWBGP = str(Path(__file__).with_name("rawbgp.py"))
GOOD = {4: [f"10.61.{i}.0/24" for i in range(20)], 6: [f"fd00:61:0:{i:x}::/64" for i in range(20)]}
POOLS = ["10.60.0.0/16", "fd00:60::/48", "10.61.0.0/16", "fd00:61::/48"]
CASE_TIMEOUT = 30.0
FULL_CHECK_EVERY = 50
HOLD = 30  # the raw sessions' hold time: a slow case must not end them


class Lines:
    """A child's stdout read as lines, without blocking."""

    def __init__(self, popen: subprocess.Popen[bytes], what: str) -> None:
        self.popen = popen
        self.what = what
        self.buf = b""
        self.lines: list[str] = []

    def fileno(self) -> int:
        assert self.popen.stdout is not None
        return self.popen.stdout.fileno()

    def read(self) -> None:
        chunk = os.read(self.fileno(), 1 << 20)
        if not chunk:
            raise BenchError(f"{self.what} exited")
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        self.lines.extend(line.decode() for line in lines)


class RawPeer:
    """`bench/rawbgp.py --reconnect` in h0's namespace, one session of `family` with bgpd on h1."""

    def __init__(self, topo: Topology, h0: Host, h1: Host, family: int) -> None:
        self.family = family
        log = open(h0.workdir / f"rawbgp{family}.log", "ab")  # noqa: SIM115 - handed to the child
        target = h1.address6 if family == 6 else h1.address
        argv = [sys.executable, RAWBGP, "--connect", target, "--asn", str(ASN), "--router-id", h0.address]
        argv += ["--hold", str(HOLD), "--family", str(family), "--reconnect"]
        try:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", h0.ns, *argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        finally:
            log.close()
        topo.fabric.processes.append(
            netns.Process(f"rawbgp{family}", h0.ns, popen, str(h0.workdir / "raw.log"))
        )
        self.popen = popen
        self.out = Lines(popen, f"rawbgp (IPv{family})")
        self.sessions = 0

    def command(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line.encode() + b"\n")
        self.popen.stdin.flush()

    def send(self, body: bytes) -> None:
        self.command(f"send {body.hex()}")

    def raw(self, data: bytes) -> None:
        self.command(f"raw {data.hex()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def _announce(family: int, ctx: Context, prefixes: list[str]) -> bytes:
    """A plain valid announcement of `prefixes` (the sentinel's)."""
    attrs = wire.origin(0) + wire.as_path() + wire.local_pref(100)
    if family == 6:
        return wire.update(attributes=attrs + wire.mp_reach(6, [ctx.peer6], prefixes))
    return wire.update(attributes=attrs + wire.next_hop(ctx.peer4), announced=prefixes)


def _withdraw(family: int, prefixes: list[str]) -> bytes:
    if family == 6:
        return wire.update(attributes=wire.mp_unreach(6, prefixes))
    return wire.update(withdrawn=prefixes)


def _end_of_rib(family: int) -> bytes:
    """RFC 4724 §2: an empty UPDATE (IPv4) or an empty MP_UNREACH_NLRI (IPv6)."""
    return _withdraw(family, [])


def _ip_text(prefix: str) -> str:
    """A prefix as `ip route` prints it (host routes without their length)."""
    net = ip_network(prefix)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def bird_config(h2: Host, h1: Host) -> str:
    routes4 = "\n".join(f"  route {p} blackhole;" for p in GOOD[4])
    routes6 = "\n".join(f"  route {p} blackhole;" for p in GOOD[6])
    return f"""
router id {h2.address};
protocol device {{ scan time 10; }}
protocol static s4 {{ ipv4;
{routes4}
}}
protocol static s6 {{ ipv6;
{routes6}
}}
protocol bgp good4 {{
  local {h2.address} as {ASN}; neighbor {h1.address} as {ASN};
  ipv4 {{ import none; export all; next hop self; }};
}}
protocol bgp good6 {{
  local {h2.address6} as {ASN}; neighbor {h1.address6} as {ASN};
  ipv6 {{ import none; export all; next hop self; }};
}}
"""


def bgpd_config(h0: Host, h1: Host, h2: Host) -> dict[str, Any]:
    peers: list[dict[str, Any]] = [
        {"address": h0.address, "asn": ASN, "passive": True, "hold_time": HOLD},
        {"address": h0.address6, "asn": ASN, "passive": True, "hold_time": HOLD},
        {"address": h2.address, "asn": ASN},
        {"address": h2.address6, "asn": ASN},
    ]
    return {
        "node": {"name": h1.name, "address": h1.address, "address6": h1.address6, "asn": ASN},
        "bgp": {"select_defer_time": 5, "peers": peers},
        "pools": [{"cidr": p} for p in POOLS],
        "export": {"protocols": ["boot", 80], "interfaces": ["cali*"]},
        "kernel": {"protocol": "bird", "table": "main"},
    }


@dataclass
class Tally:
    """The campaign's counts."""

    cases: int = 0
    matched: int = 0
    observed: collections.Counter[str] = field(default_factory=collections.Counter)
    expected: collections.Counter[str] = field(default_factory=collections.Counter)
    by_kind: dict[str, collections.Counter[str]] = field(default_factory=dict)
    details: dict[str, collections.Counter[str]] = field(default_factory=dict)
    notifications: dict[str, collections.Counter[str]] = field(default_factory=dict)
    deviations: dict[str, dict[str, Any]] = field(default_factory=dict)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    known: dict[str, dict[str, Any]] = field(default_factory=dict)


class Campaign:
    """The topology and the per-case procedure (module docstring)."""

    def __init__(self, workdir: Path, ctx: Context, log_level: str = "info") -> None:
        self.ctx = ctx
        self.silent_closes: list[str] = []  # resets where the speaker saw no NOTIFICATION
        self.log_level = log_level
        self.topo = Topology(workdir, "fuzz")
        try:
            self._build()
        except BaseException:
            self.topo.close()
            raise

    def _build(self) -> None:
        topo = self.topo
        self.h0 = topo.host("h0", 10, workload_dev=False, ipv6=True)
        self.h1 = topo.host("h1", 11, ipv6=True)
        self.h2 = topo.host("h2", 12, workload_dev=False, ipv6=True)
        topo.start_bgpd(self.h1, bgpd_config(self.h0, self.h1, self.h2), self.log_level)
        topo.start_bird(self.h2, bird_config(self.h2, self.h1))
        self.socket = str(self.h1.workdir / "run" / "bgpd.ctl")
        self.agents = {4: topo.agent(self.h1, "10.0.0.0/8"), 6: topo.agent(self.h1, "fd00::/8")}
        self.raws = {f: RawPeer(topo, self.h0, self.h1, f) for f in (4, 6)}
        for family, raw in self.raws.items():
            self._established(raw, 60.0)
            raw.send(_end_of_rib(family))
        for family, agent in self.agents.items():
            agent.wait("count", len(GOOD[family]))
            agent.seen("count", len(GOOD[family]), 60.0)
        self.good_routes()
        self.before = self.counters()

    # --- reading -------------------------------------------------------------------------------------------
    def _established(self, raw: RawPeer, timeout: float) -> None:
        self._until(lambda: self._take(raw, "established") is not None, timeout, "the raw session")
        raw.sessions += 1

    def _take(self, raw: RawPeer, prefix: str) -> str | None:
        for i, line in enumerate(raw.out.lines):
            if line.startswith(prefix):
                del raw.out.lines[i]
                return line
        return None

    def _until(self, done: Any, timeout: float, what: str) -> None:
        """Read every child's output until `done()`; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        sources: list[Any] = [*self.raws.values(), *self.agents.values()] if hasattr(self, "raws") else []
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            if self.h1.daemon is not None and not self.h1.daemon.alive():
                raise BenchError(f"bgpd exited: {self.h1.daemon.log_tail(10)}")
            fds = [s.out if isinstance(s, RawPeer) else s.proc.popen.stdout for s in sources]
            ready, _, _ = select.select(fds, [], [], min(left, 1.0))
            for fd in ready:
                if isinstance(fd, Lines):
                    fd.read()
                else:
                    agent = next(a for a in self.agents.values() if a.proc.popen.stdout is fd)
                    agent._read(0)

    def _seen(self, agent: Agent, kind: str, value: str) -> bool:
        for i, line in enumerate(agent._lines):
            words = line.split()
            if words[:3] == ["seen", kind, value]:
                del agent._lines[i]
                return True
        return False

    def counters(self) -> dict[str, dict[str, Any]]:
        """bgpd's `show peers`, by peer address."""
        return {p["address"]: p for p in ctl.request(self.socket, "peers")}

    def good_routes(self) -> None:
        """The good peer's routes, each installed via h2 (BenchError otherwise)."""
        for family in (4, 6):
            hop = self.h2.address6 if family == 6 else self.h2.address
            routes = netns.next_hops_by_prefix(self.h1.ns, "proto", "bird", family=family)
            wrong = [p for p in GOOD[family] if routes.get(_ip_text(p)) != [hop]]
            if wrong:
                raise BenchError(f"the good peer's routes {wrong[:3]}... are not installed via {hop}")

    # --- one case ------------------------------------------------------------------------------------------
    def run_case(self, case: Case) -> dict[str, Any]:
        """Run one case; returns what was observed and whether it matched (`ok`), with `problems`."""
        family = case.family
        raw, agent = self.raws[family], self.agents[family]
        sentinel = SENTINEL6 if family == 6 else SENTINEL4
        good = len(GOOD[family])
        if not case.installed():  # the prefixes are installed first, so that their removal shows
            raw.send(case.setup)
            agent.wait("count", good + len(case.prefixes))
            want = str(good + len(case.prefixes))
            self._until(lambda: self._seen(agent, "count", want), CASE_TIMEOUT, "the case's setup")
        # the mutated message, then the sentinel
        agent.wait("add", sentinel)
        raw.raw(case.wire)
        raw.send(_announce(family, self.ctx, [sentinel]))
        reset = reset_by_peer = False
        notification = ""

        def settled() -> bool:
            nonlocal reset, reset_by_peer, notification
            note = self._take(raw, "notification")
            if note is not None:
                notification = notification or " ".join(note.split()[1:3])
            closed = self._take(raw, "closed")
            if closed is not None:
                reset = True
                reset_by_peer = reset_by_peer or "reset by peer" in closed or "Broken pipe" in closed
            if reset and self._take(raw, "established") is not None:
                raw.sessions += 1
                raw.send(_announce(family, self.ctx, [sentinel]))
            return self._seen(agent, "add", sentinel)

        self._until(settled, CASE_TIMEOUT, "the sentinel")
        problems = self._check(case, reset, notification, reset_by_peer)
        observed = problems.pop(0)
        # clean up: the case's routes and the sentinel withdrawn
        raw.send(_withdraw(family, [*case.prefixes, sentinel]))
        agent.wait("count", good)
        self._until(lambda: self._seen(agent, "count", str(good)), CASE_TIMEOUT, "the cleanup")
        return {"ok": not problems, "observed": observed, "notification": notification, "problems": problems}

    def _check(self, case: Case, reset: bool, notification: str, reset_by_peer: bool = False) -> list[str]:
        """[the observed outcome, then every problem found] once the case has settled."""
        family = case.family
        peer = self.ctx.peer6 if family == 6 else self.ctx.peer4
        good_hop = self.h2.address6 if family == 6 else self.h2.address
        sentinel = SENTINEL6 if family == 6 else SENTINEL4
        routes = netns.next_hops_by_prefix(self.h1.ns, "proto", "bird", family=family)
        mine = [_ip_text(p) for p in case.prefixes]
        there = [p for p in mine if p in routes]
        problems: list[str] = []
        observed: str
        if reset:
            observed = RESET
        elif not there:
            observed = TAW
        elif len(there) == len(mine):
            observed = ACCEPTED
        else:
            observed = "partial"
        wrong_hop = [p for p in there if routes[p] != [peer]]
        if wrong_hop:
            problems.append(f"installed with another next hop: {wrong_hop}")
        expected_set = {_ip_text(p) for p in GOOD[family]} | {_ip_text(sentinel)}
        if observed == ACCEPTED:
            expected_set |= set(mine)
        extra = sorted(set(routes) - expected_set - set(mine))
        missing = sorted(expected_set - set(routes) - set(mine))
        if extra:
            problems.append(f"unexpected routes installed: {extra[:5]}")
        if missing:
            problems.append(f"routes missing: {missing[:5]}")
        bad_good = [p for p in GOOD[family] if routes.get(_ip_text(p)) not in (None, [good_hop])]
        if bad_good:
            problems.append(f"the good peer's routes changed: {bad_good[:5]}")
        after = self.counters()
        b, a = self.before[peer], after[peer]
        flaps = a["flaps"] - b["flaps"]
        moved = {
            k: v - b["rejected"].get(k, 0) for k, v in a["rejected"].items() if v != b["rejected"].get(k, 0)
        }
        want_moved = {case.counter: len(case.prefixes)} if case.outcome == TAW and case.counter else {}
        want_flaps = 1 if case.outcome == RESET else 0
        if flaps != want_flaps:
            problems.append(f"{flaps} flaps, expected {want_flaps}")
        if moved != want_moved:
            problems.append(f"counters moved {moved}, expected {want_moved}")
        if a["state"] != "up":
            problems.append(f"session {a['state']}")
        for address in (self.h2.address, self.h2.address6):
            if after[address]["flaps"] != self.before[address]["flaps"] or after[address]["state"] != "up":
                problems.append(f"the good peer's session {address} moved")
        if reset and not notification:
            # not a mismatch: the outcome is right, and the speaker cannot always see the NOTIFICATION
            # (after a TCP reset the kernel drops what was still unread: the sentinel sent right behind
            # the bad message can meet the closing socket); counted apart, `closed_without_notification`
            self.silent_closes.append(f"{case.kind} {case.detail}{' (TCP reset)' if reset_by_peer else ''}")
        elif (
            reset
            and notification
            and case.notification
            and notification.split()[0] != str(case.notification[0])
        ):
            problems.append(f"NOTIFICATION {notification}, expected error code {case.notification[0]}")
        self.before = after
        expected = ACCEPTED if case.outcome == DISCARD else case.outcome  # the same in the kernel
        if observed != expected:
            problems.insert(0, f"outcome {observed}, expected {case.outcome}")
        return [observed, *problems]

    def recover(self, family: int) -> None:
        """After a case that timed out: a fresh raw speaker for the family, back to the good routes only."""
        old = self.raws[family]
        old.stop()
        self.raws[family] = RawPeer(self.topo, self.h0, self.h1, family)
        self._established(self.raws[family], 60.0)
        good = len(GOOD[family])
        agent = self.agents[family]
        agent._lines.clear()
        agent.wait("count", good)
        self._until(lambda: self._seen(agent, "count", str(good)), 60.0, "the routes after recovery")
        self.before = self.counters()

    def close(self) -> None:
        self.topo.close()


def run(
    cases: int,
    results_dir: Path,
    seed: int = 0,
    kinds: tuple[str, ...] = tuple(KINDS),
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Generate `cases` cases (seeded), run them, write fuzz.json and fuzz.md in `results_dir`; returns the
    result dict."""
    ctx = Context()
    t0 = time.monotonic()
    batch = generate(cases, seed, ctx, kinds)
    generated = time.monotonic() - t0
    workdir = workdir or Path(f"/tmp/bgpdfuzz-{datetime.now(UTC):%Y%m%d-%H%M%S}")
    tally = Tally()
    campaign = Campaign(workdir, ctx)
    t1 = time.monotonic()
    try:
        for index, case in enumerate(batch):
            try:
                result = campaign.run_case(case)
            except TimeoutError as exc:
                result = {"ok": False, "observed": "stuck", "notification": "", "problems": [str(exc)]}
                campaign.recover(case.family)
            _count(tally, index, case, result)
            if (index + 1) % FULL_CHECK_EVERY == 0:
                campaign.good_routes()
        campaign.good_routes()
        alive = campaign.h1.daemon is not None and campaign.h1.daemon.alive()
    finally:
        campaign.close()
    ran = time.monotonic() - t1
    result = _result(tally, seed, generated, ran, alive, workdir)
    result["closed_without_notification"] = dict(collections.Counter(campaign.silent_closes))
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "fuzz.json").write_text(json.dumps(result, indent=1) + "\n")
    (results_dir / "fuzz.md").write_text(markdown(result))
    return result


def _count(tally: Tally, index: int, case: Case, result: dict[str, Any]) -> None:
    tally.cases += 1
    tally.matched += bool(result["ok"])
    observed = str(result["observed"])
    tally.observed[observed] += 1
    tally.expected[case.outcome] += 1
    tally.by_kind.setdefault(case.kind, collections.Counter())[observed] += 1
    tally.details.setdefault(case.kind, collections.Counter())[case.detail.split(" of ")[0]] += 1
    if result["notification"]:
        tally.notifications.setdefault(case.kind, collections.Counter())[result["notification"]] += 1
    if case.deviation:
        entry = tally.deviations.setdefault(
            case.kind,
            {
                "rfc": case.rfc,
                "rfc_outcome": case.rfc_says,
                "outcome": case.outcome,
                "why": case.deviation,
                "cases": 0,
            },
        )
        entry["cases"] += 1
    if not result["ok"] and case.known_issue:
        entry = tally.known.setdefault(
            case.kind, {"issue": case.known_issue, "cases": 0, "example_hex": case.wire.hex()}
        )
        entry["cases"] += 1
    elif not result["ok"]:
        tally.mismatches.append(
            {
                "index": index,
                "kind": case.kind,
                "detail": case.detail,
                "family": case.family,
                "expected": case.outcome,
                "rfc": case.rfc,
                "observed": observed,
                "notification": result["notification"],
                "problems": result["problems"],
                "prefixes": list(case.prefixes),
                "setup_hex": case.setup.hex(),
                "message_hex": case.wire.hex(),
            }
        )


def _result(
    tally: Tally, seed: int, generated: float, ran: float, alive: bool, workdir: Path
) -> dict[str, Any]:
    return {
        "scenario": "fuzz",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.uname().nodename} {os.cpu_count()} CPUs",
        "seed": seed,
        "cases": tally.cases,
        "matched": tally.matched,
        "mismatched": len(tally.mismatches),
        "bgpd_alive": alive,
        "generate_seconds": round(generated, 1),
        "run_seconds": round(ran, 1),
        "observed": dict(tally.observed),
        "expected": dict(tally.expected),
        "by_kind": {k: dict(v) for k, v in sorted(tally.by_kind.items())},
        "details": {k: dict(v) for k, v in sorted(tally.details.items())},
        "notifications": {k: dict(v) for k, v in sorted(tally.notifications.items())},
        "deviations": tally.deviations,
        "known_issues": tally.known,
        "mismatches": tally.mismatches,
        "workdir": str(workdir),
    }


def markdown(result: dict[str, Any]) -> str:
    """The short table: cases per mutation kind and observed outcome."""
    outcomes = [TAW, RESET, ACCEPTED, "partial", "stuck"]
    known = sum(k["cases"] for k in result["known_issues"].values())
    lines = [
        f"Fuzz campaign, {result['date']} on {result['machine']}: {result['cases']} cases "
        f"(seed {result['seed']}), {result['matched']} as expected, {result['mismatched']} mismatched, "
        f"{known} of a known open issue; bgpd alive at the end: {'yes' if result['bgpd_alive'] else 'NO'}; "
        f"{result['run_seconds']} s to run (+ {result['generate_seconds']} s to generate).",
        "",
        "| mutation kind | cases | " + " | ".join(outcomes) + " | NOTIFICATIONs seen |",
        "| --- | ---: | " + " | ".join("---:" for _ in outcomes) + " | --- |",
    ]
    for kind, counts in result["by_kind"].items():
        notes = ", ".join(f"{k}: {v}" for k, v in sorted(result["notifications"].get(kind, {}).items()))
        cells = " | ".join(str(counts.get(o, 0)) for o in outcomes)
        lines.append(f"| {kind} | {sum(counts.values())} | {cells} | {notes} |")
    total = " | ".join(str(result["observed"].get(o, 0)) for o in outcomes)
    lines.append(f"| **all** | {result['cases']} | {total} | |")
    if result["deviations"]:
        lines += ["", "Documented deviations from the RFC (checked as this project's outcome):", ""]
        for kind, d in result["deviations"].items():
            lines.append(f"- `{kind}` ({d['cases']} cases): {d['rfc']} says {d['rfc_outcome']}; {d['why']}")
    if result.get("closed_without_notification"):
        silent = sum(result["closed_without_notification"].values())
        lines += [
            "",
            f"Resets where the raw speaker saw no NOTIFICATION (a TCP race, or none sent): {silent}",
            "",
        ]
        lines += [f"- {what}: {n}" for what, n in result["closed_without_notification"].items()]
    if result["known_issues"]:
        lines += [
            "",
            "Known open issues (found by the campaign, not fixed here; not counted as mismatches):",
            "",
        ]
        for kind, k in result["known_issues"].items():
            lines.append(f"- `{kind}` ({k['cases']} cases): {k['issue']}")
    if result["mismatches"]:
        lines += ["", "Mismatches (first 20; all in fuzz.json with their hex):", ""]
        for m in result["mismatches"][:20]:
            lines.append(
                f"- #{m['index']} `{m['kind']}` {m['detail']} (IPv{m['family']}): {'; '.join(m['problems'])}"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="bgpd's malformed-UPDATE fuzz campaign (RFC 7606)")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--results", type=Path, default=Path("bench/results"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default="", help=f"comma-separated, of: {','.join(KINDS)}")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.cases < 1:
        print(f"bench.fuzz: --cases {args.cases}: at least 1", file=sys.stderr)
        return 2
    kinds = tuple(k for k in args.kinds.split(",") if k) or tuple(KINDS)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        print(f"bench.fuzz: unknown kind(s) {','.join(unknown)}; known: {','.join(KINDS)}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("bench.fuzz: needs root (network namespaces)", file=sys.stderr)
        return 2

    def stop(*_: object) -> None:
        close_all()
        sys.exit(1)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        result = run(args.cases, args.results, args.seed, kinds, args.workdir)
    except (BenchError, TimeoutError, ctl.CtlError, OSError) as exc:
        print(f"bench.fuzz: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    sys.stdout.write(markdown(result))
    return 0 if not result["mismatches"] else 1


if __name__ == "__main__":
    sys.exit(main())
