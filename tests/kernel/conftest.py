"""Fixtures for the kernel tests: a throw-away network namespace per test, never the host's own.

Every test gets `bgpdtest-<random>` with `lo` up, a veth pair `up0`/`up0p` (192.168.77.1/24 on `up0`, so
gateways 192.168.77.x are on a directly connected network) and a veth pair `cali1234`/`cali1234p` for
interface routes. Test actions use `ip -n NS ...`; the namespace is deleted when the test ends, pass or fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

POLL_DEADLINE = 10.0


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "kernel tests need root (they create network namespaces)"
    if shutil.which("ip") is None:
        return "kernel tests need iproute2's `ip`"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    for item in items:
        if "kernel" in item.keywords and reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


@dataclass(frozen=True)
class Netns:
    """A test namespace and helpers that act inside it."""

    name: str

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "-n", self.name, *args], check=check, capture_output=True, text=True)

    def batch(self, path: Path) -> None:
        subprocess.run(
            ["ip", "-n", self.name, "-batch", str(path)], check=True, capture_output=True, text=True
        )

    def routes(self, *selector: str) -> list[dict[str, Any]]:
        """`ip -j route show SELECTOR` parsed."""
        out = self.ip("-j", "route", "show", *selector).stdout
        result: list[dict[str, Any]] = json.loads(out) if out.strip() else []
        return result


@pytest.fixture
def netns() -> Iterator[Netns]:
    name = f"bgpdtest-{uuid.uuid4().hex[:10]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ns = Netns(name)
        ns.ip("link", "set", "lo", "up")
        ns.ip("link", "add", "up0", "type", "veth", "peer", "name", "up0p")
        ns.ip("addr", "add", "192.168.77.1/24", "dev", "up0")
        ns.ip("link", "set", "up0p", "up")
        ns.ip("link", "set", "up0", "up")
        ns.ip("link", "add", "cali1234", "type", "veth", "peer", "name", "cali1234p")
        ns.ip("link", "set", "cali1234p", "up")
        ns.ip("link", "set", "cali1234", "up")
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def poll_until(predicate: Callable[[], bool], what: str, deadline: float = POLL_DEADLINE) -> None:
    """Wait until predicate() is true; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    delay = 0.002
    while not predicate():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline:.0f}s waiting for: {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
