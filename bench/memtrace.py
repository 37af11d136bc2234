"""Where bgpd's memory per route goes: the receiving bgpd of the bulk scenario under tracemalloc.

    .venv/bin/python -m bench.memtrace --family 6 --routes 100000      # as root, from the repository root

Builds the bulk scenario's two hosts (`scenarios.build_pair`, bgpd on both, the family's pool and
sessions), with host B's bgpd started as ``python -m bench.memtrace wrap SNAPDIR DEPTH run -c CONFIG``:
tracemalloc on from the first line (DEPTH frames per allocation), a snapshot dumped to SNAPDIR on every
SIGUSR2 (after a `gc.collect()`). The harness takes one snapshot idle (2 s after the probe route went
A -> B and back), adds N routes on A with one `ip -batch` as `bulk` does, waits until B's agent counts N
installed routes, waits 2 s, takes the second snapshot, then compares them: the bytes (and blocks) per
route each source line of bgpd holds beyond idle, largest first, and the same grouped by call stack.

The figures are Python allocations only (tracemalloc), the RSS difference of B's bgpd process is printed
beside them: the gap is the allocator's (pymalloc arenas, malloc) and anything not traced. tracemalloc
makes bgpd several times slower; nothing here is a benchmark figure. Everything the run creates is removed
as in the benchmark (namespaces, processes by pid); the snapshots stay in the work directory.
"""

from __future__ import annotations

import argparse
import gc
import linecache
import os
import signal
import sys
import time
import tracemalloc
from datetime import datetime
from pathlib import Path
from types import FrameType

from . import report, scenarios, topo
from .scenarios import FAMILIES, Settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SNAP_TIMEOUT = 120.0


# --------------------------------------------------------------------------------------------- in bgpd
def wrap(argv: list[str]) -> int:
    """`wrap SNAPDIR DEPTH BGPD-ARGS...`: run bgpd's CLI with tracemalloc on and SIGUSR2 -> snapshot."""
    snapdir, depth, rest = Path(argv[0]), int(argv[1]), argv[2:]
    tracemalloc.start(depth)
    taken = 0

    def on_usr2(_signum: int, _frame: FrameType | None) -> None:
        nonlocal taken
        gc.collect()
        snap = tracemalloc.take_snapshot()
        tmp = snapdir / f".snap-{taken}.tmp"
        snap.dump(str(tmp))
        del snap
        tmp.rename(snapdir / f"snap-{taken}.pickle")  # the harness waits for this name
        taken += 1

    signal.signal(signal.SIGUSR2, on_usr2)
    from bgpd.cli import main

    return main(rest)


# --------------------------------------------------------------------------------------------- harness
def snapshot(host: topo.Host, snapdir: Path, index: int, topology: topo.Topology) -> Path:
    assert host.daemon is not None
    path = snapdir / f"snap-{index}.pickle"
    host.daemon.signal(signal.SIGUSR2)
    deadline = time.monotonic() + SNAP_TIMEOUT
    while not path.exists():
        topology.check_alive()
        if time.monotonic() > deadline:
            raise topo.BenchError(f"no tracemalloc snapshot {path} within {SNAP_TIMEOUT:.0f}s")
        time.sleep(0.2)
    return path


def _where(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename.replace(str(ROOT) + "/", "")


def analyse(idle: Path, full: Path, n: int, top: int, frames: int) -> tuple[list[str], float]:
    """Lines of text: per source line, bytes and blocks per route beyond idle; then per call stack."""
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        tracemalloc.Filter(False, "<unknown>"),
    ]
    old = tracemalloc.Snapshot.load(str(idle)).filter_traces(ignore)
    new = tracemalloc.Snapshot.load(str(full)).filter_traces(ignore)
    by_line = sorted(new.compare_to(old, "lineno"), key=lambda s: s.size_diff, reverse=True)
    total = sum(s.size_diff for s in by_line) / n
    out = [
        f"traced (Python allocations) beyond idle: {total:.0f} B/route",
        "",
        "| B/route | blocks/route | where | source |",
        "| ---: | ---: | --- | --- |",
    ]
    for stat in by_line[:top]:
        f = stat.traceback[0]
        src = linecache.getline(f.filename, f.lineno).strip().replace("|", "\\|")
        where = f"{_where(f.filename)}:{f.lineno}"
        out.append(f"| {stat.size_diff / n:.1f} | {stat.count_diff / n:.2f} | {where} | `{src}` |")
    out += ["", f"by call stack (innermost first, {frames} frames):", ""]
    by_stack = sorted(new.compare_to(old, "traceback"), key=lambda s: s.size_diff, reverse=True)
    for stat in by_stack[:top]:
        if stat.size_diff / n < 1.0:
            break
        frames_text = " <- ".join(
            f"{_where(fr.filename)}:{fr.lineno}" for fr in list(reversed(stat.traceback))[:frames]
        )
        per_route = f"{stat.size_diff / n:.1f} B/route, {stat.count_diff / n:.2f} blocks/route"
        out.append(f"- {per_route}: {frames_text}")
    return out, total


def run(args: argparse.Namespace) -> int:
    family = FAMILIES[args.family]
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir: Path = args.workdir or Path(f"/tmp/bgpdbench-memtrace-{stamp}")
    snapdir = workdir / f"snapshots{family.suffix}"
    snapdir.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        workdir=workdir,
        bulk_timeout=args.timeout,
        receiver_launcher=("-m", "bench.memtrace", "wrap", str(snapdir), str(args.depth)),
    )
    n = args.routes
    add_file, _ = scenarios.batch_files(settings, n, family)
    t0 = time.monotonic()
    pair = scenarios.build_pair(settings, "bgpd", f"memtrace{n}{family.suffix}", family)
    try:
        time.sleep(2.0)
        rss0 = pair.b.rss_by_process().get("bgpd", 0)
        idle = snapshot(pair.b, snapdir, 0, pair.topo)
        pair.agent_b.wait("count", n)
        t_add = time.monotonic()
        scenarios.ip_batch(pair.a, add_file)
        scenarios._wait_count(pair, n, settings.bulk_timeout, f"memtrace add {n}")
        add_s = time.monotonic() - t_add
        time.sleep(2.0)
        rss1 = pair.b.rss_by_process().get("bgpd", 0)
        full = snapshot(pair.b, snapdir, 1, pair.topo)
    finally:
        pair.topo.close()
        add_file.unlink(missing_ok=True)
        add_file.with_name(add_file.name.replace("add", "del")).unlink(missing_ok=True)
    lines, traced = analyse(idle, full, n, args.top, args.frames)
    m = report.machine()
    head = [
        f"# bgpd memory per route, IPv{family.version}, {n:,} routes (tracemalloc, depth {args.depth})",
        "",
        f"Measured {datetime.now().astimezone().isoformat(timespec='seconds')} on {m['nproc']} × {m['cpu']}, "
        f"kernel {m['kernel']}, Python {m['python']}; `python -m bench.memtrace --family {family.version} "
        f"--routes {n}`. The receiving host's bgpd process (not ExaBGP, which keeps no Adj-RIB-In): RSS "
        f"{rss0 / 2**20:.1f} MiB idle, {rss1 / 2**20:.1f} MiB with the routes installed "
        f"(under tracemalloc) = {(rss1 - rss0) / n:.0f} B/route; traced {traced:.0f} B/route; "
        f"add took {add_s:.1f} s under tracemalloc.",
        "",
    ]
    text = "\n".join(head + lines) + "\n"
    out: Path = args.out or RESULTS / f"memtrace-ipv{family.version}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"written {out} (wall {time.monotonic() - t0:.0f} s; snapshots in {snapdir})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["wrap"]:
        return wrap(argv[1:])
    p = argparse.ArgumentParser(prog="python -m bench.memtrace", description=__doc__.splitlines()[0])
    p.add_argument("--family", type=int, choices=(4, 6), default=6)
    p.add_argument("--routes", type=int, default=100_000)
    p.add_argument("--depth", type=int, default=12, help="tracemalloc frames per allocation (12)")
    p.add_argument("--frames", type=int, default=6, help="frames shown per call stack (6)")
    p.add_argument("--top", type=int, default=20, help="rows per table (20)")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds for the routes to arrive (900)")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None, help="default bench/results/memtrace-ipvF.md")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench.memtrace: needs root (network namespaces)", file=sys.stderr)
        return 1
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _on_signal)
    try:
        return run(args)
    finally:
        topo.close_all()


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


if __name__ == "__main__":
    sys.exit(main())
