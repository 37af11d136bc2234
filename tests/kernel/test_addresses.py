"""local_addresses and namespace handling, inside a throw-away network namespace."""

from __future__ import annotations

import socket
import subprocess
import uuid
from ipaddress import IPv4Address, IPv6Address

import pytest

from bgpd.kernel import InstallError, RouteInstaller, local_addresses

from .conftest import Netns

pytestmark = pytest.mark.kernel


def test_local_addresses(netns: Netns) -> None:
    netns.ip("addr", "add", "10.1.2.3/32", "dev", "cali1234")
    assert local_addresses(netns.name) == frozenset(
        {IPv4Address("127.0.0.1"), IPv4Address("192.168.77.1"), IPv4Address("10.1.2.3")}
    )


def test_local_addresses_ipv6(netns6: Netns) -> None:
    """Default: IPv4 only, as before, on a dual-stack host; `families` adds IPv6 (link-local included,
    without scope)."""
    netns6.ip("addr", "add", "fd00:20::1/128", "dev", "cali1234", "nodad")
    v4 = local_addresses(netns6.name)
    assert v4 == frozenset(
        {IPv4Address("127.0.0.1"), IPv4Address("192.168.77.1"), IPv4Address("192.168.78.1")}
    )
    v6 = local_addresses(netns6.name, families=(socket.AF_INET6,))
    assert {IPv6Address("::1"), IPv6Address("fd00:77::1"), IPv6Address("fd00:78::1")} <= v6
    assert IPv6Address("fd00:20::1") in v6
    link_local = [a for a in v6 if a.is_link_local]
    assert link_local and all(a.scope_id is None for a in link_local)
    assert all(isinstance(a, IPv6Address) for a in v6)
    assert local_addresses(netns6.name, families=(socket.AF_INET, socket.AF_INET6)) == v4 | v6
    with pytest.raises(ValueError):
        local_addresses(netns6.name, families=(socket.AF_PACKET,))


def test_missing_namespace_is_an_error_and_is_not_created() -> None:
    name = f"bgpdtest-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(OSError):
        local_addresses(name)
    with pytest.raises(InstallError):
        RouteInstaller(12, 254, netns=name)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert name not in listed
