"""Network namespaces, links and processes for simulated hosts, built with iproute2's `ip`.

Everything is created inside namespaces whose names start with a given prefix; the machine's own
namespace is never changed (veth pairs are created directly in their target namespaces). `Fabric` records
what it created and `close()` removes it: processes (by pid), then namespaces, which takes their links.
`remove_leftovers(prefix)` finds namespaces of an earlier, crashed run by their prefix.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any


class CommandError(RuntimeError):
    pass


def ip(*args: str, ns: str | None = None, check: bool = True, stdin: str | None = None) -> str:
    """Run `ip [-n NS] ARGS...` and return its stdout."""
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise CommandError(f"{' '.join(argv)}: {proc.stderr.strip()}")
    return proc.stdout


def ns_exec(
    ns: str, *argv: str, check: bool = True, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=False, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise CommandError(f"{ns}: {' '.join(argv)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def link_exists(name: str, ns: str) -> bool:
    """Does device `name` exist in namespace `ns`?"""
    return bool(ip("link", "show", "dev", name, ns=ns, check=False).strip())


def sysctl(ns: str, key: str, value: str) -> None:
    """Set a sysctl inside `ns` (never in the machine's own namespace)."""
    ns_exec(ns, "sysctl", "-qw", f"{key}={value}")


def list_namespaces(prefix: str) -> list[str]:
    out = ip("-j", "netns", "list", check=False).strip()
    names = [entry["name"] for entry in json.loads(out)] if out else []
    return [n for n in names if n.startswith(prefix)]


def routes(ns: str, *selector: str, family: int = 4) -> list[dict[str, Any]]:
    """`ip -j -FAMILY route show ...` inside `ns`, parsed (IPv4 unless `family=6`)."""
    out = ip("-j", f"-{family}", "route", "show", *selector, ns=ns).strip()
    return list(json.loads(out)) if out else []


def next_hops_by_prefix(ns: str, *selector: str, family: int = 4) -> dict[str, list[str]]:
    """The routes `ip -FAMILY route show SELECTOR` lists inside `ns` (IPv4 unless `family=6`): prefix (as
    ip prints it: host routes without /32 or /128) -> sorted next hops (one for a single-path route,
    several for a multipath one)."""
    out: dict[str, list[str]] = {}
    for r in routes(ns, *selector, family=family):
        hops = [r["gateway"]] if "gateway" in r else [n["gateway"] for n in r.get("nexthops", [])]
        out[r["dst"]] = sorted(hops)
    return out


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll `predicate` until true; raise TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def runs(pid: int, marker: bytes) -> bool:
    """Does `pid` still run the program whose command line holds `marker` (pids can be reused)?"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return marker in fh.read()
    except OSError:
        return False


def stop_pid(pid: int, marker: bytes, timeout: float = 5.0) -> None:
    """End a process we started, by pid, only if that pid still runs it (`runs(pid, marker)`): SIGTERM,
    then SIGKILL after `timeout` seconds; reaped if it is our child (no zombie left)."""
    if not runs(pid, marker):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while runs(pid, marker) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if runs(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _pids_in(ns: str) -> list[int]:
    out = ip("netns", "pids", ns, check=False)
    return [int(p) for p in out.split()]


def remove_namespace(ns: str) -> None:
    """Kill every process still inside `ns` (they can only be ours: the namespace is ours), then delete it."""
    for pid in _pids_in(ns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    ip("netns", "del", ns, check=False)


def remove_leftovers(prefix: str) -> list[str]:
    """Remove namespaces left by an earlier run with this prefix; returns their names."""
    left = list_namespaces(prefix)
    for ns in left:
        remove_namespace(ns)
    return left


@dataclass
class Process:
    name: str
    ns: str
    popen: subprocess.Popen[bytes]
    log_path: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, wait, then SIGKILL; returns the exit code."""
        if self.alive():
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Fabric:
    """Namespaces, links and processes created for one lab or test; `close()` removes all of it."""

    prefix: str
    namespaces: list[str] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)

    def namespace(self, name: str) -> str:
        full = f"{self.prefix}{name}"
        ip("netns", "add", full)
        self.namespaces.append(full)
        ip("link", "set", "lo", "up", ns=full)
        return full

    def bridge(self, ns: str, name: str = "br0") -> None:
        ip("link", "add", name, "type", "bridge", ns=ns)
        ip("link", "set", name, "up", ns=ns)

    def veth(self, ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
        """A veth pair created directly inside the two namespaces, both ends up."""
        ip("link", "add", name_a, "netns", ns_a, "type", "veth", "peer", "name", name_b, "netns", ns_b)
        ip("link", "set", name_a, "up", ns=ns_a)
        ip("link", "set", name_b, "up", ns=ns_b)

    def spawn(
        self, name: str, ns: str, argv: Sequence[str], log_path: str, env: dict[str, str] | None = None
    ) -> Process:
        log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - owned by the child
        try:
            popen = subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
            )
        finally:
            log.close()
        proc = Process(name, ns, popen, log_path)
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.processes):
            proc.stop(timeout=5.0)
        self.processes.clear()
        for ns in reversed(self.namespaces):
            remove_namespace(ns)
        self.namespaces.clear()
