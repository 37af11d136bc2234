"""A real etcd (Debian's etcd-server) in a network namespace the test creates, and a watcher agent beside it.

`etcd` (fixture): an `EtcdServer` listening only inside its own namespace (`bgpdtetcd<hex>-etcd`, on
127.0.0.1 of that namespace unless told another address), data and logs in a temporary directory; `start()`
waits (with a deadline) for its "serving client traffic" log line, `stop()` ends it by pid, `restart()` starts
it again on the same data (same revisions). `agent` (fixture): `tests/datastore/agent.py` run inside that
namespace, with the watcher's events and the answers to its commands read as JSON lines. Everything
(processes by pid, the namespace, the temporary directory) is removed when the test ends, also on failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from bgpd.lab.etcd import EtcdServer as EtcdServer  # re-exported: the tests import it from here
from bgpd.lab.netns import Fabric, wait_for

REPO = Path(__file__).resolve().parents[2]
EVENT_DEADLINE = 30.0


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 'ip' not installed"
    if shutil.which("etcd") is None:
        return "etcd not installed (Debian package etcd-server; scripts/setup.sh installs it)"
    return None


def _etcd(tls: bool) -> Iterator[EtcdServer]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    fabric = Fabric(prefix=f"bgpdtetcd{secrets.token_hex(3)}-")
    workdir = Path(tempfile.mkdtemp(prefix="bgpd-etcd-"))
    try:
        ns = fabric.namespace("etcd")
        server = EtcdServer(fabric, ns, "127.0.0.1", workdir, tls=tls)
        server.start()
        yield server
    finally:
        logs = [(p.name, p.log_tail(15)) for p in fabric.processes]
        fabric.close()
        shutil.rmtree(workdir, ignore_errors=True)
        for name, tail in logs:
            sys.stderr.write(f"--- {name} (last lines) ---\n{tail}\n")


@pytest.fixture
def etcd() -> Iterator[EtcdServer]:
    yield from _etcd(tls=False)


@pytest.fixture
def etcd_tls() -> Iterator[EtcdServer]:
    """etcd serving https only, with client certificates required (`--client-cert-auth`)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (scripts/setup.sh installs it)")
    yield from _etcd(tls=True)


class Agent:
    """`tests/datastore/agent.py` inside the etcd namespace: its events, and commands sent to it."""

    def __init__(self, etcd: EtcdServer, prefix: str, *options: str) -> None:
        self.log_path = etcd.workdir / f"agent-{secrets.token_hex(3)}.log"
        log: IO[bytes] = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        try:
            argv = ["ip", "netns", "exec", etcd.ns, sys.executable, "-m", "tests.datastore.agent"]
            self.popen = subprocess.Popen(
                [*argv, etcd.client_url, "--prefix", prefix, *options],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                cwd=REPO,
                text=True,
            )
        finally:
            log.close()
        self.lines: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._lock:
                self.lines.append(json.loads(line))

    def events(self) -> list[dict[str, Any]]:
        """The watcher's events so far, in order."""
        with self._lock:
            return [line for line in self.lines if "event" in line]

    def wait_event(
        self, predicate: Callable[[dict[str, Any]], bool], what: str, after: int = 0
    ) -> tuple[int, dict[str, Any]]:
        """The first event at index >= `after` matching `predicate` (index, event); TimeoutError naming
        `what` after EVENT_DEADLINE seconds."""
        found: list[tuple[int, dict[str, Any]]] = []

        def seen() -> bool:
            if self.popen.poll() is not None:
                raise RuntimeError(f"agent exited: {self.log_tail()}")
            for i, event in enumerate(self.events()[after:], start=after):
                if predicate(event):
                    found.append((i, event))
                    return True
            return False

        wait_for(seen, EVENT_DEADLINE, what, interval=0.05)
        return found[0]

    def command(self, op: str, **args: str) -> dict[str, Any]:
        """Send a command and wait for its answer; AssertionError on an error answer."""
        self._next_id += 1
        ident = self._next_id
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps({"id": ident, "op": op, **args}) + "\n")
        self.popen.stdin.flush()
        answer: list[dict[str, Any]] = []

        def answered() -> bool:
            with self._lock:
                answer.extend(line for line in self.lines if line.get("reply") == ident)
            return bool(answer)

        wait_for(answered, EVENT_DEADLINE, f"the agent's answer to {op}", interval=0.02)
        assert "error" not in answer[0], answer[0]["error"]
        return answer[0]

    def put(self, key: str, value: str) -> int:
        return int(self.command("put", key=key, value=value)["revision"])

    def delete(self, key: str) -> int:
        return int(self.command("delete", key=key)["revision"])

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """Close its stdin (it cancels its watcher and exits), SIGKILL by pid after 10 s."""
        if self.popen.stdin is not None:
            self.popen.stdin.close()
        deadline = time.monotonic() + 10
        while self.popen.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
        self._reader.join(timeout=5)


AgentFactory = Callable[..., Agent]


@pytest.fixture
def make_agent() -> Iterator[AgentFactory]:
    """`make_agent(etcd, *agent_options)`: an agent for that etcd, stopped when the test ends."""
    started: list[Agent] = []

    def make(etcd: EtcdServer, *options: str) -> Agent:
        started.append(Agent(etcd, PREFIX, *options))
        return started[-1]

    try:
        yield make
    finally:
        for handle in started:
            handle.stop()
            tail = handle.log_tail()
            if tail:
                sys.stderr.write(f"--- agent (stderr) ---\n{tail}\n")


@pytest.fixture
def agent(etcd: EtcdServer, make_agent: AgentFactory) -> Agent:
    return make_agent(etcd)


PREFIX = "/calico/resources/v3/projectcalico.org/"
