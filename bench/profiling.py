"""py-spy sampling of the daemons during a run, and a text summary of where the samples fell."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PYSPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
# Leaf functions where a thread waits (py-spy samples them when it cannot tell that the thread is idle).
IDLE_LEAVES = frozenset({"EpollSelector.select", "PollSelector.select", "Reactor._wait_for_io", "_worker"})
# Wrappers that sit on every stack and say nothing about where the time goes.
GENERIC_FILES = ("asyncio/", "threading.py", "<frozen runpy>", "concurrent/futures/", "selectors.py")
GENERIC_FUNCS = frozenset({"<module>", "main", "cmd_run", "_run_module_as_main", "_run_code", "run"})
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def available() -> bool:
    return Path(PYSPY).exists()


@dataclass
class Recording:
    role: str
    pid: int
    path: Path
    popen: subprocess.Popen[bytes]


@dataclass
class Profiler:
    """py-spy record on several pids at once (`start`), stopped together with SIGINT (`stop`)."""

    outdir: Path
    rate: int = 100
    recordings: list[Recording] = field(default_factory=list)

    def start(self, targets: dict[str, int | None], phase: str) -> None:
        self.outdir.mkdir(parents=True, exist_ok=True)
        for role, pid in targets.items():
            if pid is None:
                continue
            path = self.outdir / f"{phase}-{role}.txt"
            log = open(self.outdir / f"{phase}-{role}.log", "wb")  # noqa: SIM115 - handed to py-spy
            try:
                popen = subprocess.Popen(
                    [
                        PYSPY,
                        "record",
                        "--pid",
                        str(pid),
                        "--rate",
                        str(self.rate),
                        "--format",
                        "raw",
                        "--function",
                        "--nonblocking",
                        "--output",
                        str(path),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            finally:
                log.close()
            self.recordings.append(Recording(f"{phase}-{role}", pid, path, popen))

    def stop(self) -> list[Recording]:
        done, self.recordings = self.recordings, []
        for rec in done:
            if rec.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(rec.popen.pid, signal.SIGINT)
        for rec in done:
            try:
                rec.popen.wait(20)
            except subprocess.TimeoutExpired:
                rec.popen.kill()
                rec.popen.wait()
        return done


def _parse_frame(frame: str) -> tuple[str, str]:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip(), ""
    file = m.group("file")
    for marker in ("site-packages/", "/lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    file = file.replace(str(Path(__file__).resolve().parent.parent) + "/", "")
    return m.group("func"), file


def summarize(path: Path, top: int = 12) -> dict[str, object]:
    """Self and inclusive shares per function from a py-spy raw (collapsed stacks) file.

    Shares are of the busy samples: stacks whose leaf is a known wait (`IDLE_LEAVES`) are counted apart as
    idle. Inclusive rows leave out generic wrappers (asyncio, threading, runpy) and frames present in more
    than 90% of the busy samples (main loops)."""
    selfc: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = idle = 0
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {"samples": 0, "idle": 0, "self": [], "inclusive": []}
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        parsed = [_parse_frame(f) for f in frames]
        if parsed[-1][0] in IDLE_LEAVES:
            idle += count
            continue
        total += count
        names = [f"{func} ({file})" for func, file in parsed]
        selfc[names[-1]] += count
        for name, (func, file) in set(zip(names, parsed, strict=True)):
            if not file.startswith(GENERIC_FILES) and func not in GENERIC_FUNCS:
                incl[name] += count

    def rows(counter: Counter[str], cap: float = 1.0) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for name, n in counter.most_common():
            share = n / total if total else 0.0
            if share > cap:
                continue
            out.append({"function": name, "samples": n, "share": round(share, 4)})
            if len(out) == top:
                break
        return out

    return {"samples": total, "idle": idle, "self": rows(selfc), "inclusive": rows(incl, 0.9)}


def format_summary(role: str, summary: dict[str, object], top: int = 10) -> str:
    lines = [f"### {role}: {summary['samples']} busy samples ({summary['idle']} waiting, left out)"]
    for kind in ("self", "inclusive"):
        rows = summary[kind]
        assert isinstance(rows, list)
        lines.append(f"{kind}:")
        for row in rows[:top]:
            lines.append(f"  {100 * row['share']:5.1f}%  {row['function']}")
    return "\n".join(lines)
