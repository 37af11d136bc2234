"""Malformed UPDATEs from a peer (RFC 7606): a hand-built UPDATE that replaces a good path with one bgpd
cannot use removes the earlier path from the kernel ("treat-as-withdraw", §2 and §7.1, as BIRD does), is
counted as `malformed`, and leaves the session up; an UPDATE whose NLRI cannot be parsed resets the session
(§5.3). tests/e2e/test_fuzz.py runs the generated campaign (bench/fuzz.py); these are the hand-built cases.

The peer is bench/rawbgp.py, an iBGP speaker on h0 that connects to bgpd on h1 (passive for it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import rawbgp
from bgpd.lab.netns import Process, wait_for
from tests.e2e.conftest import ASN, UNDERLAY, Host, Underlay

pytestmark = pytest.mark.e2e

CONVERGE = 30.0
POOL = "10.52.0.0/16"
PREFIX = "10.52.0.0/24"
RAWBGP = Path(rawbgp.__file__)
H0 = f"{UNDERLAY}.10"  # the raw speaker's address (host h0), the next hop it announces


class RawPeer:
    """rawbgp.py running in `host`'s namespace, connected to `peer`; its events are lines in a log file."""

    def __init__(self, host: Host, peer: Host) -> None:
        self.log = host.workdir / "rawbgp.log"
        with open(self.log, "wb") as out:
            argv = [sys.executable, str(RAWBGP), "--connect", peer.address, "--asn", str(ASN)]
            argv += ["--router-id", host.address, "--hold", "9"]
            popen = subprocess.Popen(
                ["ip", "netns", "exec", host.ns, *argv],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        # the fixture's Fabric.close() stops it (and removing the namespace kills whatever is left)
        host.fabric.processes.append(Process("rawbgp", host.ns, popen, str(self.log)))
        self.popen = popen

    def events(self) -> list[str]:
        return self.log.read_text().splitlines()

    def send(self, body: bytes) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(f"send {body.hex()}\n".encode())
        self.popen.stdin.flush()

    def announce(self, attributes: bytes) -> None:
        self.send(rawbgp.update(attributes=attributes, announced=[PREFIX]))


def _good(next_hop: str) -> bytes:
    return rawbgp.origin(0) + rawbgp.as_path() + rawbgp.next_hop(next_hop) + rawbgp.local_pref(100)


def _setup(underlay: Underlay) -> tuple[Host, Host, RawPeer]:
    h0, h1 = underlay.host("h0", 10), underlay.host("h1", 11)
    h1.write_config(
        bgp={"hold_time": 9, "peers": [{"address": h0.address, "asn": ASN, "passive": True}]},
        pools=[{"cidr": POOL}],
    )
    h1.start_bgpd()
    raw = RawPeer(h0, h1)
    wait_for(lambda: "established" in raw.events(), CONVERGE, "the raw speaker's session")
    wait_for(lambda: _peer(h1)["state"] == "up", CONVERGE, "bgpd's view of the session")
    return h0, h1, raw


def _peer(host: Host) -> dict[str, Any]:
    (peer,) = host.ctl_json("show", "peers")
    assert isinstance(peer, dict)
    return peer


def _rejected(host: Host, reason: str) -> int:
    return int(_peer(host)["rejected"].get(reason, 0))


def _installed(h1: Host, h0: Host) -> None:
    wait_for(lambda: h1.bird_routes().get(PREFIX) == [h0.address], CONVERGE, f"{PREFIX} via {h0.address}")


def _session_stayed_up(h1: Host, raw: RawPeer) -> None:
    assert not [e for e in raw.events() if e.startswith(("notification", "closed"))], raw.events()
    peer = _peer(h1)
    assert (peer["state"], peer["flaps"]) == ("up", 0)


def test_origin_7_withdraws_the_earlier_path(underlay: Underlay) -> None:
    """The issue: ExaBGP passes ORIGIN 7 on as "origin": "invalid"; bgpd must not keep the old path."""
    h0, h1, raw = _setup(underlay)
    raw.announce(_good(h0.address))
    _installed(h1, h0)
    assert _rejected(h1, "malformed") == 0

    raw.announce(rawbgp.origin(7) + rawbgp.as_path() + rawbgp.next_hop(h0.address) + rawbgp.local_pref(100))
    wait_for(lambda: PREFIX not in h1.bird_routes(), CONVERGE, "the earlier path removed from the kernel")
    wait_for(lambda: _rejected(h1, "malformed") == 1, CONVERGE, "the UPDATE counted as malformed")
    _session_stayed_up(h1, raw)

    raw.announce(_good(h0.address))  # a good UPDATE afterwards is installed again
    _installed(h1, h0)


_O, _PATH, _NH, _LP = rawbgp.origin(0), rawbgp.as_path(), rawbgp.next_hop(H0), rawbgp.local_pref(100)
KINDS = {
    # (attributes of the replacing UPDATE, the reject reason bgpd counts)
    # ExaBGP passes these on as announcements bgpd cannot use (JSON: "origin": "invalid", next hop
    # "no-nexthop" or "::", "attribute-0x63-0x60", no "origin"): bgpd treats them as withdrawals
    "origin_7": (rawbgp.origin(7) + _PATH + _NH + _LP, "malformed"),
    "no_next_hop": (_O + _PATH + _LP, "malformed"),
    "next_hop_16_octets": (_O + _PATH + rawbgp.attribute(rawbgp.TRANSITIVE, 3, bytes(16)) + _LP, "malformed"),
    "unknown_well_known_attribute": (
        _O + _PATH + _NH + _LP + rawbgp.attribute(rawbgp.TRANSITIVE, 99, b"\1\2"),
        "malformed",
    ),
    "no_origin": (_PATH + _NH + _LP, "malformed"),
    # ExaBGP itself turns these into withdrawals ("error": "treat-as-withdraw"); bgpd counts them
    "local_pref_3_octets": (
        _O + _PATH + _NH + rawbgp.attribute(rawbgp.TRANSITIVE, 5, b"\0\0\1"),
        "malformed",
    ),
    "origin_empty": (rawbgp.attribute(rawbgp.TRANSITIVE, 1, b"") + _PATH + _NH + _LP, "malformed"),
    # ExaBGP 5.0.15 reset the session over these; bgpd.exabgp.rfc7606 makes them treat-as-withdraw
    "originator_id_3_octets": (
        _O + _PATH + _NH + _LP + rawbgp.attribute(rawbgp.OPTIONAL, 9, b"\0\0\1"),
        "malformed",
    ),
    "origin_2_octets": (rawbgp.attribute(rawbgp.TRANSITIVE, 1, b"\0\0") + _PATH + _NH + _LP, "malformed"),
    "no_as_path": (_O + _NH + _LP, "malformed"),
    # well-formed, with a next hop the import policy refuses: it removes the earlier path itself
    "next_hop_zero": (_O + _PATH + rawbgp.next_hop("0.0.0.0") + _LP, "invalid_next_hop"),
    "next_hop_multicast": (_O + _PATH + rawbgp.next_hop("224.0.0.5") + _LP, "invalid_next_hop"),
}


@pytest.mark.parametrize(("attributes", "reason"), KINDS.values(), ids=KINDS.keys())
def test_unusable_replacement_withdraws_the_earlier_path(
    underlay: Underlay, attributes: bytes, reason: str
) -> None:
    h0, h1, raw = _setup(underlay)
    assert h0.address == H0
    raw.announce(_good(H0))
    _installed(h1, h0)
    assert _rejected(h1, reason) == 0
    raw.announce(attributes)
    wait_for(lambda: PREFIX not in h1.bird_routes(), CONVERGE, "the earlier path removed from the kernel")
    wait_for(lambda: _rejected(h1, reason) == 1, CONVERGE, f"the UPDATE counted as {reason}")
    _session_stayed_up(h1, raw)
    raw.announce(_good(H0))
    _installed(h1, h0)


def test_unparsable_nlri_resets_the_session(underlay: Underlay) -> None:
    """An NLRI of length 33 cannot be parsed, so nothing in the UPDATE can be withdrawn reliably: ExaBGP
    answers NOTIFICATION 3/10 (Invalid Network Field) and closes the session (RFC 7606 §5.3): the route goes
    with the session, as a flap rather than a malformed route."""
    h0, h1, raw = _setup(underlay)
    raw.announce(_good(h0.address))
    _installed(h1, h0)
    raw.send(rawbgp.update_body(b"", _good(h0.address), rawbgp.nlri([PREFIX]) + bytes([33, 10, 52, 1, 0, 0])))
    wait_for(lambda: any(e.startswith("notification 3 10 ") for e in raw.events()), CONVERGE, "NOTIFICATION")
    wait_for(lambda: PREFIX not in h1.bird_routes(), CONVERGE, "the route removed with the session")
    wait_for(lambda: _peer(h1)["flaps"] == 1, CONVERGE, "the session counted as a flap")
    assert _rejected(h1, "malformed") == 0
