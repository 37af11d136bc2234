"""The soak run's resource figures: one sample of a bgpd process tree, and the "flat" verdict over samples.

A sample is taken from /proc only: per role of the tree (`bgpd`, `exabgp`, `bridge` as `topo.Host.roles`
names them) its RSS (bytes, /proc/PID/statm), its open file descriptors (entries of /proc/PID/fd) and
the tree's CPU seconds. The tree's CPU counts, besides the live processes' utime + stime, bgpd's
cutime + cstime: the CPU of children it has reaped (an ExaBGP the soak killed), so the total only grows.

The verdict (`verdict`) compares the first third of the samples with the last third, per host:

- RSS: the median tree RSS of the last third minus that of the first third must stay below
  `RSS_TOLERANCE_MIB`. Why that figure: samples are taken at checkpoints with the same route load (the
  bulk batches withdrawn; ~250 routes in each kernel), after a warm-up round that took every process near
  its high-water mark; what still moves is pymalloc arena reuse and an ExaBGP that was restarted (a fresh
  one is ~1 MiB smaller): measured over 30 minutes (2026-11-30) bgpd's own RSS rose 2.3–3.0 MiB in steps
  that flattened out (most in the first 10 minutes), ExaBGP's moved by ±1 MiB. Each host receives ~9,000
  route events a minute, so between the middles of the first and last thirds of a 30-minute soak (20
  minutes) a leak of 50 B per event adds ~9 MiB and is caught; a 2-minute run catches only a leak of
  ~500 B per event or more.
- fds: at the end (every session Established, no churn) each role's count equals the baseline's.
- CPU: the tree's CPU seconds per minute in the last third at most `CPU_FACTOR` times the first third's
  plus `CPU_SLACK` s/min: the schedule is the same mix of operations every round, so per-event work that
  grows with history shows as a rising rate; a 2-core VM shared with other jobs makes ±30 % plausible.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from .topo import CLK_TCK, PAGE, Host, cmdline, proc_stat

RSS_TOLERANCE_MIB = 8.0
CPU_FACTOR = 1.5
CPU_SLACK = 1.0  # CPU seconds per minute
MIB = 1 << 20


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE
    except OSError:
        return 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def role_of(pid: int) -> str:
    """bgpd, exabgp, bridge or other, from the command line (as `topo.Host.roles`)."""
    line = cmdline(pid)
    if "bgpd.exabgp.bridge" in line:
        return "bridge"
    if "exabgp" in line:
        return "exabgp"
    if "bgpd" in line and " run " in line:
        return "bgpd"
    return "other"


def sample(host: Host) -> dict[str, Any]:
    """One reading of `host`'s bgpd tree: {"pids", "rss" (bytes), "fds", "cpu_s"} per role, plus
    "rss_total" (bytes) and "cpu_total_s" (including what bgpd's reaped children used)."""
    out: dict[str, Any] = {"pids": {}, "rss": {}, "fds": {}, "cpu_s": {}}
    cpu_total = 0.0
    root = host.daemon.pid if host.daemon else None
    for pid in host.tree():
        fields = proc_stat(pid)
        if fields is None:
            continue
        role = role_of(pid)
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
        if pid == root:
            cpu_total += (int(fields[13]) + int(fields[14])) / CLK_TCK  # cutime, cstime: reaped children
        cpu_total += cpu
        out["pids"].setdefault(role, []).append(pid)
        out["rss"][role] = out["rss"].get(role, 0) + _rss(pid)
        out["fds"][role] = out["fds"].get(role, 0) + _fds(pid)
        out["cpu_s"][role] = round(out["cpu_s"].get(role, 0.0) + cpu, 2)
    out["rss_total"] = sum(out["rss"].values())
    out["cpu_total_s"] = round(cpu_total, 2)
    return out


def thirds(n: int) -> tuple[range, range]:
    """Indices of the first and the last third of n samples (at least one each; they may overlap when
    n < 3)."""
    k = max(1, n // 3)
    return range(k), range(n - k, n)


def _cpu_rate(samples: list[dict[str, Any]], name: str, idx: range) -> float | None:
    """CPU s/min of host `name` between the first and last sample of `idx` (None for one sample)."""
    a, b = samples[idx.start], samples[idx.stop - 1]
    if b["t"] <= a["t"]:
        return None
    cpu = float(b["hosts"][name]["cpu_total_s"]) - float(a["hosts"][name]["cpu_total_s"])
    return round(cpu * 60.0 / (float(b["t"]) - float(a["t"])), 3)


def verdict(
    samples: list[dict[str, Any]], final: dict[str, dict[str, Any]], baseline: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Per host figures and the flags rss_flat, fds_flat, cpu_flat.

    `samples`: [{"t": seconds since the baseline, "round": int, "hosts": {name: sample}}], the baseline
    first; `final`/`baseline`: {name: sample} taken at quiescence at the end / right after the warm-up.
    For the CPU rates the samples are split into thirds by index; with fewer than 4 samples the rate over
    the whole run stands for both ends."""
    first, last = thirds(len(samples))
    if len(samples) >= 4:
        cpu_first, cpu_last = range(0, first.stop + 1), range(last.start - 1, len(samples))
    else:
        cpu_first = cpu_last = range(len(samples))
    hosts: dict[str, Any] = {}
    for name in baseline:
        rss = [s["hosts"][name]["rss_total"] for s in samples]
        rss_first = statistics.median(rss[i] for i in first)
        rss_last = statistics.median(rss[i] for i in last)
        growth = (rss_last - rss_first) / MIB
        rate_first = _cpu_rate(samples, name, cpu_first)
        rate_last = _cpu_rate(samples, name, cpu_last)
        fds_before, fds_after = baseline[name]["fds"], final[name]["fds"]
        cpu_ok = rate_first is None or rate_last is None or rate_last <= CPU_FACTOR * rate_first + CPU_SLACK
        hosts[name] = {
            "rss_before_mib": round(baseline[name]["rss_total"] / MIB, 2),
            "rss_after_mib": round(final[name]["rss_total"] / MIB, 2),
            "rss_before_by_role_mib": {r: round(v / MIB, 2) for r, v in baseline[name]["rss"].items()},
            "rss_after_by_role_mib": {r: round(v / MIB, 2) for r, v in final[name]["rss"].items()},
            "rss_first_third_median_mib": round(rss_first / MIB, 2),
            "rss_last_third_median_mib": round(rss_last / MIB, 2),
            "rss_growth_mib": round(growth, 2),
            "rss_min_mib": round(min(rss) / MIB, 2),
            "rss_max_mib": round(max(rss) / MIB, 2),
            "fds_before": fds_before,
            "fds_after": fds_after,
            "fds_max": max(sum(s["hosts"][name]["fds"].values()) for s in samples),
            "cpu_per_min_first_s": rate_first,
            "cpu_per_min_last_s": rate_last,
            "cpu_total_s": round(final[name]["cpu_total_s"] - baseline[name]["cpu_total_s"], 2),
            "rss_flat": growth < RSS_TOLERANCE_MIB,
            "fds_flat": fds_before == fds_after,
            "cpu_flat": cpu_ok,
        }
    return {
        "hosts": hosts,
        "rss_flat": all(h["rss_flat"] for h in hosts.values()),
        "fds_flat": all(h["fds_flat"] for h in hosts.values()),
        "cpu_flat": all(h["cpu_flat"] for h in hosts.values()),
        "tolerance": {
            "rss_growth_mib_below": RSS_TOLERANCE_MIB,
            "rss_compared": "median of the last third of the checkpoints minus median of the first third",
            "fds": "equal per role at the end (every session up, no churn) and right after the warm-up",
            "cpu": f"last third's CPU s/min <= {CPU_FACTOR} x first third's + {CPU_SLACK}",
        },
    }


def table(result: dict[str, Any]) -> str:
    """The markdown summary of a soak result (what `bench.soak.run` returns)."""
    v = result["verdict"]
    lines = [
        f"# soak — {result['date']}, {result['churn_s']:.0f} s of churn, {result['rounds']} rounds, "
        f"seed {result['seed']}",
        "",
        f"{result['machine']}",
        "",
        "| host | RSS before → after (MiB) | RSS growth, thirds (MiB) | fds before → after "
        "| CPU s/min first → last third | kernel = RIB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, h in v["hosts"].items():
        before = "/".join(str(h["fds_before"].get(r, 0)) for r in ("bgpd", "exabgp", "bridge"))
        after = "/".join(str(h["fds_after"].get(r, 0)) for r in ("bgpd", "exabgp", "bridge"))
        lines.append(
            f"| {name} | {h['rss_before_mib']:.1f} → {h['rss_after_mib']:.1f} | {h['rss_growth_mib']:+.2f} "
            f"| {before} → {after} | {h['cpu_per_min_first_s']} → {h['cpu_per_min_last_s']} "
            f"| {'yes' if result['final']['hosts'][name]['match'] else 'NO'} |"
        )
    flags = ("rss_flat", "fds_flat", "cpu_flat", "kernel_matches_rib", "daemons_alive")
    lines += [
        "",
        "fds as bgpd/exabgp/bridge. Events: " + ", ".join(f"{k} {n}" for k, n in result["events"].items()),
        "",
        "Verdict: "
        + ", ".join(f"{f} {'yes' if result['verdict'][f] else 'NO'}" for f in flags)
        + f" — **{'flat' if result['verdict']['flat'] else 'NOT flat'}**",
        "",
        f"Tolerances: RSS growth < {v['tolerance']['rss_growth_mib_below']} MiB "
        f"({v['tolerance']['rss_compared']}); fds {v['tolerance']['fds']}; CPU {v['tolerance']['cpu']}.",
    ]
    return "\n".join(lines) + "\n"
