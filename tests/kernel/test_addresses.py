"""local_addresses and namespace handling, inside a throw-away network namespace."""

from __future__ import annotations

import subprocess
import uuid
from ipaddress import IPv4Address

import pytest

from bgpd.kernel import InstallError, RouteInstaller, RouteWatcher, local_addresses

from .conftest import Netns

pytestmark = pytest.mark.kernel


def test_local_addresses(netns: Netns) -> None:
    netns.ip("addr", "add", "10.1.2.3/32", "dev", "cali1234")
    assert local_addresses(netns.name) == frozenset(
        {IPv4Address("127.0.0.1"), IPv4Address("192.168.77.1"), IPv4Address("10.1.2.3")}
    )


def test_missing_namespace_is_an_error_and_is_not_created() -> None:
    name = f"bgpdtest-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(OSError):
        local_addresses(name)
    with pytest.raises(InstallError):
        RouteInstaller(12, 254, netns=name)
    watcher = RouteWatcher(254, lambda events: None, netns=name)
    with pytest.raises(OSError):
        watcher.start()
    watcher.stop()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert name not in listed
