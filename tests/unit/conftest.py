"""Fixtures shared by the unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bgpd import config
from bgpd.speaker import Speaker


@pytest.fixture
def speaker(tmp_path: Path) -> Iterator[Speaker]:
    """A host speaker (192.168.100.3, mesh with 192.168.100.10, pool 10.20.0.0/16) driven by hand: an event
    loop that is never run (timers are inspected, not fired), no ExaBGP, no kernel."""
    path = tmp_path / "bgpd.yaml"
    path.write_text(
        "node: {name: h, address: 192.168.100.3, asn: 64512}\n"
        "bgp: {mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.3]}}\n"
        "pools: [{cidr: 10.20.0.0/16}]\n"
        f"runtime: {{dir: {tmp_path / 'run'}}}\n"
    )
    sp = Speaker(config.load(str(path)))
    loop = asyncio.new_event_loop()
    sp._loop = loop
    try:
        yield sp
    finally:
        loop.close()
