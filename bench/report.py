"""Turning per-repetition results into the table: median (min–max) per daemon, ratio, goal."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

COLUMNS = ("bgpd", "bird")  # the table's two daemon columns


@dataclass(frozen=True)
class Row:
    scenario: str  # key in results["runs"]
    metric: str  # key in each repetition's dict; "a.b" = key b of the dict under key a
    label: str
    unit: str
    scale: float = 1.0  # multiply raw values (bytes -> MiB ...)
    goal: str = ""
    check: Callable[[float, float | None], bool | None] | None = None  # (bgpd median, ratio) -> met
    digits: int = 2
    # where the bgpd and the BIRD column take their runs from (results["runs"][scenario][key]); None: the
    # column has no figure for this row (and no error either)
    keys: tuple[str | None, str | None] = COLUMNS


EXABGP_ONLY = ("exabgp", None)  # the floor scenario's runs (ExaBGP alone), in the bgpd column
FLOOR = "ExaBGP alone (API command → peer's JSON event)"


def _ratio_le(limit: float) -> Callable[[float, float | None], bool | None]:
    return lambda _v, ratio: None if ratio is None else ratio <= limit


MIB = 1 / (1 << 20)


# The two-host scenarios' rows, one set per address family: IPv4 (latency, bulk10k, bulk100k, memory) and
# IPv6 (latency6, bulk10k6, bulk100k6: their labels start with "IPv6"; memory from the bulk100k6 runs).
# issue 17's goals: latency p50 (add and delete) within 2× BIRD's; a reflector converging as fast as BIRD
# with at most 3× its memory; bgpd + ExaBGP + helper idle within 40 MiB
LATENCY_LIMIT = 2.0
REFLECTOR_RSS_LIMIT = 3.0
IDLE_RSS_MIB = 40.0


def _latency_rows(scenario: str, title: str) -> list[Row]:
    goal, check = f"≤ {LATENCY_LIMIT}× BIRD", _ratio_le(LATENCY_LIMIT)
    return [
        Row(scenario, "add_p50_ms", f"{title} add → installed, p50", "ms", goal=goal, check=check),
        Row(scenario, "add_p90_ms", f"{title} add → installed, p90", "ms"),
        Row(scenario, "del_p50_ms", f"{title} delete → removed, p50", "ms", goal=goal, check=check),
        Row(scenario, "del_p90_ms", f"{title} delete → removed, p90", "ms"),
    ]


def _bulk_rows(scenario: str, title: str, limit: float) -> list[Row]:
    return [
        Row(
            scenario,
            "add_s",
            f"{title} added → all installed",
            "s",
            goal=f"≤ {limit}× BIRD",
            check=_ratio_le(limit),
        ),
        Row(scenario, "del_s", f"{title} deleted → all removed", "s"),
        Row(
            scenario, "sender_overflows_add", f"{title}: sender lost kernel notifications", "times", digits=0
        ),
    ]


def _memory_rows(scenario: str, prefix: str = "") -> list[Row]:
    return [
        Row(
            scenario,
            "bytes_per_route",
            f"{prefix}receiver RSS per route beyond idle",
            "B",
            goal="≤ 500 B",
            check=lambda v, _r: v <= 500,
            digits=0,
        ),
        Row(
            scenario,
            "rss_idle_bytes",
            f"{prefix}receiver RSS idle",
            "MiB",
            scale=MIB,
            goal=f"≤ {IDLE_RSS_MIB:.0f} MiB",
            check=lambda v, _r: v <= IDLE_RSS_MIB,
            digits=1,
        ),
        Row(
            scenario,
            "rss_full_bytes",
            f"{prefix}receiver RSS, all routes installed",
            "MiB",
            scale=MIB,
            digits=1,
        ),
        Row(scenario, "cpu_per_10k_receiver_s", f"{prefix}receiver CPU per 10k routes added", "s"),
        Row(scenario, "cpu_per_10k_sender_s", f"{prefix}sender CPU per 10k routes added", "s"),
    ]


def _reflector_rows(scenario: str, title: str, goal: bool) -> list[Row]:
    return [
        Row(
            scenario,
            "converge_s",
            f"{title}: every client has all others' routes",
            "s",
            goal="≤ 1.0× BIRD" if goal else "",
            check=_ratio_le(1.0) if goal else None,
        ),
        Row(scenario, "reflector_cpu_s", f"{title} CPU until converged", "s"),
        Row(
            scenario,
            "cpu_by_process_s.exabgp",
            f"{title}: ExaBGP's own CPU until converged",
            "s",
            keys=("bgpd", None),
        ),
        Row(
            scenario,
            "reflector_rss_bytes",
            f"{title} RSS converged",
            "MiB",
            scale=MIB,
            goal=f"≤ {REFLECTOR_RSS_LIMIT:.0f}× BIRD" if goal else "",
            check=_ratio_le(REFLECTOR_RSS_LIMIT) if goal else None,
            digits=1,
        ),
    ]


ROWS = [
    *_latency_rows("latency", "latency"),
    *_latency_rows("latency-active", "latency, both hosts active"),
    *_bulk_rows("bulk10k", "bulk 10k", 0.5),
    *_bulk_rows("bulk100k", "bulk 100k", 1.0),
    *_reflector_rows("reflector", "reflector", goal=True),
    # reflector200 and its growth over reflector; "{rr_small}"/"{rr_large}" are the two client counts
    *_reflector_rows("reflector200", "reflector ({rr_large} clients)", goal=False),
    Row(
        "reflector_growth",
        "converge_ratio",
        "reflector: convergence, {rr_large} ÷ {rr_small} clients (routes delivered: {rr_work}×)",
        "×",
    ),
    Row(
        "reflector_growth",
        "per_route_ratio",
        "reflector: time per route delivered, {rr_large} ÷ {rr_small} clients (1 = linear)",
        "×",
    ),
    Row(
        "reflector_growth",
        "cpu_ratio",
        "reflector: CPU until converged, {rr_large} ÷ {rr_small} clients",
        "×",
    ),
    *_memory_rows("memory"),
    Row(
        "idle",
        "idle_cpu_pct",
        "receiver idle CPU, 10k routes installed",
        "% core",
        goal="≈ 0",
        check=lambda v, _r: v <= 0.5,
        digits=2,
    ),
    Row("idle", "idle_cpu_sender_pct", "sender idle CPU, 10k routes announced", "% core", digits=2),
    *_latency_rows("latency6", "IPv6 latency"),
    *_bulk_rows("bulk10k6", "IPv6 bulk 10k", 0.5),
    *_bulk_rows("bulk100k6", "IPv6 bulk 100k", 1.0),
    *_memory_rows("bulk100k6", "IPv6 bulk 100k: "),
    # issue 10: blackhole /32 blocks; "{small}"/"{large}" are the two batch sizes (--blocks-sizes)
    Row("blocks_small", "add_s", "blocks {small}: /32 blocks added → all installed", "s"),
    Row("blocks_small", "add_us_per_route", "blocks {small}: time per block added", "µs", digits=1),
    Row("blocks_large", "add_s", "blocks {large}: /32 blocks added → all installed", "s"),
    Row("blocks_large", "add_us_per_route", "blocks {large}: time per block added", "µs", digits=1),
    Row(
        "blocks",
        "growth_add",
        "blocks: time per block added, {large} ÷ {small} (1 = linear)",
        "×",
        goal="≤ 1.3 (linear)",
        check=lambda v, _r: v <= 1.3,
    ),
    Row("blocks_small", "del_s", "blocks {small}: deleted → all removed", "s"),
    Row("blocks_large", "del_s", "blocks {large}: deleted → all removed", "s"),
    Row("blocks", "growth_del", "blocks: time per block deleted, {large} ÷ {small}", "×"),
    Row(
        "blocks_large",
        "ctl_add_sender_max_ms",
        "blocks {large}: sender's slowest status answer during the add",
        "ms",
        digits=0,
    ),
    Row(
        "blocks_large",
        "ctl_add_receiver_max_ms",
        "blocks {large}: receiver's slowest status answer during the add",
        "ms",
        digits=0,
    ),
    Row(
        "blocks_large",
        "ctl_add_sender_failures",
        "blocks {large}: sender's status requests unanswered during the add",
        "times",
        goal="0",
        check=lambda v, _r: v == 0,
        digits=0,
    ),
    Row(
        "blocks_large",
        "sender_overflows_add",
        "blocks {large}: sender lost kernel notifications",
        "times",
        digits=0,
    ),
    Row("floor", "add_p50_ms", f"{FLOOR}, add p50", "ms", keys=EXABGP_ONLY),
    Row("floor", "add_p90_ms", f"{FLOOR}, add p90", "ms", keys=EXABGP_ONLY),
    Row("floor", "del_p50_ms", f"{FLOOR}, delete p50", "ms", keys=EXABGP_ONLY),
    Row("floor", "del_p90_ms", f"{FLOOR}, delete p90", "ms", keys=EXABGP_ONLY),
    Row("floor", "add_p50_ms", f"{FLOOR}, unpatched ExaBGP, add p50", "ms", keys=("exabgp-unpatched", None)),
    Row(
        "floor", "del_p50_ms", f"{FLOOR}, unpatched ExaBGP, delete p50", "ms", keys=("exabgp-unpatched", None)
    ),
]


def _fmt(value: float, digits: int) -> str:
    if math.isnan(value):
        return "—"
    if digits == 0 or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def stats(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def metric_of(run: Any, metric: str) -> Any:
    """run[metric], following dots into nested dicts ("cpu_by_process_s.exabgp"); None if absent."""
    value = run
    for part in metric.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def values_of(results: dict[str, Any], row: Row, daemon: str) -> list[float]:
    runs = results["runs"].get(row.scenario, {}).get(daemon, [])
    values = (metric_of(r, row.metric) for r in runs)
    return [v * row.scale for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def size_text(n: int) -> str:
    """30000 -> "30k", 1500 -> "1,500"."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else f"{n:,}"


def label_sizes(settings: dict[str, Any]) -> dict[str, str]:
    """The sizes row labels name: blocks' two batch sizes ({small}, {large}); the reflector's client counts
    ({rr_small}, {rr_large}) and how many times more routes the large reflector delivers ({rr_work})."""
    small, large = settings.get("blocks_sizes") or (30_000, 100_000)
    rr = [
        (settings.get("reflector_clients", 50), settings.get("reflector_routes_per_client", 200)),
        (settings.get("reflector200_clients", 200), settings.get("reflector200_routes_per_client", 200)),
    ]
    (c0, r0), (c1, r1) = rr
    work = (c1 * (c1 - 1) * r1) / (c0 * (c0 - 1) * r0) if c0 > 1 and r0 > 0 else float("nan")
    return {
        "small": size_text(small),
        "large": size_text(large),
        "rr_small": str(c0),
        "rr_large": str(c1),
        "rr_work": f"{work:.1f}",
    }


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per table row that has data, with stats per daemon, ratio and goal status."""
    sizes = label_sizes(results.get("settings", {}))
    out = []
    for row in ROWS:
        if row.scenario not in results["runs"]:
            continue
        entry: dict[str, Any] = {
            "scenario": row.scenario,
            "metric": row.metric,
            "label": row.label.format(**sizes) if "{" in row.label else row.label,
            "unit": row.unit,
            "goal": row.goal,
        }
        for column, key in zip(COLUMNS, row.keys, strict=True):
            entry[f"{column}_source"] = key
            entry[column] = stats(values_of(results, row, key)) if key else None
            errors = results.get("errors", {}).get(row.scenario, {}).get(key) if key else None
            if errors:
                entry[f"{column}_error"] = errors
        b, r = entry["bgpd"], entry["bird"]
        entry["ratio"] = b["median"] / r["median"] if b and r and r["median"] else None
        entry["met"] = row.check(b["median"], entry["ratio"]) if (row.check and b) else None
        entry["digits"] = row.digits
        out.append(entry)
    return out


def _cell(entry: dict[str, Any], daemon: str) -> str:
    s = entry[daemon]
    if s is None:
        return str(entry.get(f"{daemon}_error", "—"))
    d = entry["digits"]
    if s["n"] == 1:
        return f"{_fmt(s['median'], d)}"
    return f"{_fmt(s['median'], d)} ({_fmt(s['min'], d)}–{_fmt(s['max'], d)})"


def table(rows: list[dict[str, Any]]) -> list[list[str]]:
    lines = [
        ["scenario", "unit", "bgpd median (min–max)", "BIRD median (min–max)", "bgpd/BIRD", "goal", "met"]
    ]
    for e in rows:
        ratio = "—" if e["ratio"] is None else f"{e['ratio']:.2f}×"
        met = "" if e["met"] is None else ("yes" if e["met"] else "no")
        lines.append([e["label"], e["unit"], _cell(e, "bgpd"), _cell(e, "bird"), ratio, e["goal"], met])
    return lines


def text_table(rows: list[dict[str, Any]]) -> str:
    cells = table(rows)
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    out = []
    for n, r in enumerate(cells):
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def markdown(results: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    cells = table(rows)
    m = results["machine"]
    lines = [
        f"Measured {results['date']} on {m['nproc']} × {m['cpu']}, {m['mem_gib']} GiB, kernel {m['kernel']}, "
        f"BIRD {m['bird']}, ExaBGP {m['exabgp']}, Python {m['python']}; "
        f"repetitions: {', '.join(f'{k} {v}' for k, v in results['repeat'].items())}.",
        "",
        "| " + " | ".join(cells[0]) + " |",
        "|" + "|".join(" --- " for _ in cells[0]) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in cells[1:]]
    notes = results.get("notes", [])
    if notes:
        lines += ["", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def _run(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // (1 << 20)
    except OSError:
        pass
    try:
        from importlib.metadata import version

        exabgp = version("exabgp")
    except Exception:
        exabgp = "?"
    bird = (
        (_run("bird", "--version") + _run("bash", "-c", "bird --version 2>&1")).split("version")[-1].strip()
    )
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu or platform.processor(),
        "mem_gib": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "bird": bird or "?",
        "exabgp": exabgp,
        "host": platform.node(),
        "loadavg_at_start": os.getloadavg(),
    }


def write(results: dict[str, Any], outdir: Path) -> tuple[Path, Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    rows = summarize(results)
    results["summary"] = rows
    text = json.dumps(results, indent=1, default=str)
    stamp = datetime.fromisoformat(results["date"]).strftime("%Y%m%d-%H%M%S")
    latest = outdir / "latest.json"
    latest.write_text(text)
    (outdir / f"{stamp}.json").write_text(text)
    md = outdir / "latest.md"
    md.write_text(markdown(results, rows))
    return latest, md
