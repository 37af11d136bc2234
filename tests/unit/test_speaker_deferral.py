"""Selection deferral in the speaker (RFC 4724 §4.1), driven with decoded ExaBGP events: End-of-RIB waits
for the peers' tables, goes after everything reflected, and stale kernel routes wait for restarting peers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from bgpd import config
from bgpd.exabgp import codec
from bgpd.kernel import Snapshot
from bgpd.model import Attributes
from bgpd.speaker import Speaker

C10, C11 = IPv4Address("192.168.100.10"), IPv4Address("192.168.100.11")
ASN = 64512


def make(tmp_path: Path, text: str) -> Iterator[tuple[Speaker, list[str]]]:
    path = tmp_path / "bgpd.yaml"
    path.write_text(text + f"runtime: {{dir: {tmp_path / 'run'}}}\n")
    sp = Speaker(config.load(str(path)))
    loop = asyncio.new_event_loop()
    sp._loop = loop
    sent: list[str] = []
    sp.exabgp.send = sent.extend  # type: ignore[method-assign]
    sp.on_kernel_events([Snapshot((), "start")])
    try:
        yield sp, sent
    finally:
        loop.close()


@pytest.fixture
def reflector(tmp_path: Path) -> Iterator[tuple[Speaker, list[str]]]:
    yield from make(
        tmp_path,
        "node: {name: rr, address: 192.168.100.2, asn: 64512}\n"
        "reflector: {cluster_id: 1.0.0.1, clients: [192.168.100.10, 192.168.100.11]}\n"
        "pools: [{cidr: 10.20.0.0/16}]\n",
    )


@pytest.fixture
def host(tmp_path: Path) -> Iterator[tuple[Speaker, list[str]]]:
    yield from make(
        tmp_path,
        "node: {name: h, address: 192.168.100.3, asn: 64512}\n"
        "bgp: {mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.11, 192.168.100.3]}}\n"
        "pools: [{cidr: 10.20.0.0/16}]\n",
    )


def up(sp: Speaker, peer: IPv4Address, restarting: bool = False) -> None:
    sp._on_event(codec.PeerOpen(peer, ASN, peer, 9, 120, True, restarting))
    sp._on_event(codec.PeerState(peer, ASN, "up"))


def eors(sent: list[str]) -> list[str]:
    return [line for line in sent if "eor" in line]


def test_reflector_holds_end_of_rib_until_the_late_client_sent_its_table(
    reflector: tuple[Speaker, list[str]],
) -> None:
    """The issue's case: .10 is back, .11 not yet: .10 gets no End-of-RIB (it keeps .11's routes)."""
    sp, sent = reflector
    up(sp, C10)
    sp._on_event(codec.EndOfRib(C10))
    assert eors(sent) == [] and sp.deferral.waiting == {C11}
    up(sp, C11)
    block = IPv4Network("10.20.11.0/26")
    sp._on_event(codec.Update(C11, ASN, (codec.Announced(block, C11, Attributes(local_pref=100)),)))
    sp._on_event(codec.EndOfRib(C11))  # in the same read as its UPDATE: no loop turn in between
    to_c10 = [line for line in sent if line.startswith(f"neighbor {C10} ")]
    assert "10.20.11.0/26" in to_c10[0] and to_c10[-1] == codec.eor_line(C10)  # the route, then End-of-RIB


def test_whole_cluster_restart_sends_end_of_rib_but_keeps_stale_routes(
    host: tuple[Speaker, list[str]],
) -> None:
    """Every peer restarts too (Restart State bit): End-of-RIB is not held back for them (they wait for
    ours), but the kernel routes through them stay until they have re-sent their tables."""
    sp, sent = host
    sp.stale_kernel = {IPv4Network("10.20.10.0/26")}
    up(sp, C10, restarting=True)
    up(sp, C11, restarting=True)
    assert sorted(eors(sent)) == sorted([codec.eor_line(C10), codec.eor_line(C11)])
    assert not sp.reconciled and sp.stale_wait.waiting == {C10, C11}
    sp._on_event(codec.EndOfRib(C10))
    assert not sp.reconciled
    sp._on_event(codec.EndOfRib(C11))
    assert sp.reconciled and sp.stale_kernel == set()


def test_deferral_timer_ends_both_waits(host: tuple[Speaker, list[str]]) -> None:
    sp, sent = host
    up(sp, C10)
    assert eors(sent) == []
    sp._deferral_expired()
    assert eors(sent) == [codec.eor_line(C10)] and sp.reconciled
