"""The malformed-UPDATE fuzz campaign (issue 14) in CI, and property tests of its grammar.

The grammar (`bench/fuzzgrammar.py`): every generated valid UPDATE decodes without a single problem with a
decoder written here from RFC 4271 §4.1/§4.3/§5, RFC 4760 §3-§5, RFC 7606 §7 and RFC 7607, carrying the
prefixes it claims; every mutation really breaks what its kind claims (the decoder finds that problem), and
the ones meant to stay valid (maximum size, trailing bits, reserved octet, duplicates) break nothing else.
No root needed.

The campaign (`bench/fuzz.py`, as root, with BIRD 2): 400 cases drawn from a fixed seed, through the same
harness as the benchmark's 10,000: bgpd stays up, every case's outcome, kernel routes and counters are the
expected ones, the good peer's routes stay, and every mutation kind and every outcome occurs.
"""

from __future__ import annotations

import os
import shutil
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from bench import fuzz
from bench import rawbgp as wire
from bench.fuzzgrammar import (
    ACCEPTED,
    DISCARD,
    KINDS,
    OUTCOMES,
    RESET,
    TAW,
    Case,
    Context,
    cases,
    valid_updates,
)
from bench.topo import BIRD

CTX = Context()
WELL_KNOWN_FLAGS = {1: 0x40, 2: 0x40, 3: 0x40, 4: 0x80, 5: 0x40, 6: 0x40, 7: 0xC0, 8: 0xC0, 9: 0x80, 10: 0x80}
WELL_KNOWN_FLAGS |= {14: 0x80, 15: 0x80, 32: 0xC0}
FIXED_LENGTH = {1: 1, 3: 4, 4: 4, 5: 4, 6: 0, 7: 8, 9: 4}
MULTIPLE_OF = {8: 4, 10: 4, 32: 12}  # a non-zero multiple of (RFC 7606 §7.8, §7.10, RFC 8092 §6)
BAD_HOPS = {"0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.5", "239.255.255.250", "240.0.0.1", "255.255.255.255"}
BAD_HOPS |= {"::", "::1", "ff02::5", "fe80::1", "::ffff:192.168.100.10", CTX.own4, CTX.own6}
BAD_ADDRESSES = {ip_address(a) for a in BAD_HOPS}


@dataclass
class Decoded:
    """What the decoder below found in one message: its problems (names) and the prefixes it announces."""

    problems: set[str] = field(default_factory=set)
    announced: list[str] = field(default_factory=list)
    as_numbers: int = 0
    codes: list[int] = field(default_factory=list)  # the attribute type codes, first occurrences


def _nlri(data: bytes, bits: int, out: Decoded, problem: str) -> None:
    """Prefixes (RFC 4271 §4.3): a length, then just the octets it needs; bits past it must not matter."""
    at = 0
    while at < len(data):
        length = data[at]
        size = (length + 7) // 8
        if length > bits or at + 1 + size > len(data):
            out.problems.add(problem)
            return
        raw = data[at + 1 : at + 1 + size]
        value = int.from_bytes(raw + bytes(bits // 8 - size), "big")
        if value & ((1 << (bits - length)) - 1):
            out.problems.add("trailing_bits")
        masked = value >> (bits - length) << (bits - length) if length else 0
        out.announced.append(str(ip_network((masked, length))))
        at += 1 + size


def _as_path(value: bytes, out: Decoded) -> None:
    at = 0
    while at < len(value):
        if at + 2 > len(value):
            out.problems.add("as_path")
            return
        kind, count = value[at], value[at + 1]
        end = at + 2 + 4 * count
        if kind not in (1, 2) or count == 0 or end > len(value):
            out.problems.add("as_path")
            return
        asns = struct.unpack(f"!{count}I", value[at + 2 : end])
        out.as_numbers += count if kind == 2 else 1
        if 0 in asns:
            out.problems.add("as_zero")
        if CTX.asn in asns:
            out.problems.add("as_loop")
        at = end


def _mp(code: int, value: bytes, out: Decoded) -> None:
    name = "mp_reach" if code == 14 else "mp_unreach"
    if len(value) < 3:
        out.problems.add(name)
        return
    afi, safi = struct.unpack("!HB", value[:3])
    if afi not in (1, 2) or safi != 1:
        out.problems.add(name)
        return
    bits = 32 if afi == 1 else 128
    if code == 15:
        _nlri(value[3:], bits, out, name)
        return
    if len(value) < 4 or len(value) < 5 + value[3]:
        out.problems.add(name)
        return
    size = value[3]
    hop = value[4 : 4 + size]
    if size not in ((4,) if afi == 1 else (16, 32)):
        out.problems.add(name)
        return
    if (IPv4Address(hop) if afi == 1 else IPv6Address(hop[:16])) in BAD_ADDRESSES:
        out.problems.add("next_hop_semantic")
    if value[4 + size]:
        out.problems.add("mp_reserved")
    _nlri(value[5 + size :], bits, out, name)


def _attribute(flags: int, code: int, value: bytes, out: Decoded) -> None:
    if code in WELL_KNOWN_FLAGS and flags & 0xC0 != WELL_KNOWN_FLAGS[code]:
        out.problems.add(f"flags:{code}")
    elif code not in WELL_KNOWN_FLAGS and not flags & 0x80:
        out.problems.add("unknown_well_known")
    if code in FIXED_LENGTH and len(value) != FIXED_LENGTH[code]:
        out.problems.add(f"length:{code}")
        return
    if code in MULTIPLE_OF and (not value or len(value) % MULTIPLE_OF[code]):
        out.problems.add(f"length:{code}")
        return
    if code == 1 and value[0] > 2:
        out.problems.add("origin_value")
    elif code == 2:
        _as_path(value, out)
    elif code == 3 and IPv4Address(value) in BAD_ADDRESSES:
        out.problems.add("next_hop_semantic")
    elif code in (14, 15):
        _mp(code, value, out)


def decode(message: bytes) -> Decoded:
    """One message, decoded from scratch (RFC 4271 §4.1, §4.3, §5, §6; RFC 4760; RFC 7606; RFC 7607)."""
    out = Decoded()
    if len(message) > wire.MAX_MESSAGE:
        out.problems.add("oversize")
    if message[:16] != wire.MARKER or len(message) < 19 or message[18] != wire.UPDATE:
        out.problems.add("header")
        return out
    if struct.unpack("!H", message[16:18])[0] != len(message):
        out.problems.add("header")
        return out
    body = message[19:]
    if len(body) < 4:
        out.problems.add("length")
        return out
    withdrawn_length = struct.unpack("!H", body[:2])[0]
    if 2 + withdrawn_length + 2 > len(body):
        out.problems.add("field")
        return out
    withdrawn = Decoded()
    _nlri(body[2 : 2 + withdrawn_length], 32, withdrawn, "withdrawn")
    out.problems |= withdrawn.problems - {"trailing_bits"}
    at = 2 + withdrawn_length
    total = struct.unpack("!H", body[at : at + 2])[0]
    attributes, nlri = body[at + 2 : at + 2 + total], body[at + 2 + total :]
    if len(attributes) != total:
        out.problems.add("field")
        return out
    seen: list[int] = []
    at = 0
    while at < len(attributes):
        if at + 3 > len(attributes) or (attributes[at] & 0x10 and at + 4 > len(attributes)):
            out.problems.add("attr_framing")
            break
        flags, code = attributes[at], attributes[at + 1]
        head = 4 if flags & 0x10 else 3
        length = int.from_bytes(attributes[at + 2 : at + head], "big")
        if at + head + length > len(attributes):
            out.problems.add("attr_framing")
            break
        value = attributes[at + head : at + head + length]
        at += head + length
        if code in seen:
            out.problems.add(f"duplicate:{code}")
            continue
        seen.append(code)
        _attribute(flags, code, value, out)
    _nlri(nlri, 32, out, "nlri")
    out.codes = seen
    if nlri or 14 in seen:
        for code in (1, 2) + ((3,) if nlri else ()):
            if code not in seen:
                out.problems.add(f"missing:{code}")
    return out


# what each kind must have broken (a problem the decoder reports), or, for the valid ones, left alone
CLAIMS = {
    "attr_length": lambda p: any(x.startswith("length:") for x in p),
    "attr_overrun": lambda p: "attr_framing" in p,
    "attr_underrun": lambda p: "attr_framing" in p,
    "bad_flags": lambda p: any(x.startswith("flags:") for x in p),
    "duplicate": lambda p: any(x.startswith("duplicate:") for x in p),
    "unknown_well_known": lambda p: "unknown_well_known" in p,
    "missing": lambda p: any(x.startswith("missing:") for x in p),
    "bad_origin": lambda p: "origin_value" in p,
    "next_hop": lambda p: "next_hop_semantic" in p,
    "as_path_loop": lambda p: "as_loop" in p,
    "as_path_malformed": lambda p: bool({"as_path", "as_zero"} & p),
    "mp_reach": lambda p: "mp_reach" in p,
    "mp_unreach": lambda p: "mp_unreach" in p,
    "nlri": lambda p: bool({"nlri", "withdrawn"} & p),
    "field_length": lambda p: "field" in p,
    "truncated": lambda p: bool({"length", "field", "nlri"} & p),
    "header": lambda p: bool({"header", "length"} & p),
}
HARMLESS = {
    "valid": set(),
    "as_path_long": set(),
    "trailing_bits": {"trailing_bits"},
    "mp_reserved": {"mp_reserved"},
}


@given(valid_updates(CTX))
@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
def test_valid_updates_decode_without_a_problem(valid: object) -> None:
    from bench.fuzzgrammar import Valid

    assert isinstance(valid, Valid)
    message = wire.message(wire.UPDATE, valid.body())
    decoded = decode(message)
    assert decoded.problems == set(), decoded
    assert sorted(decoded.announced) == sorted(str(ip_network(p)) for p in valid.prefixes)
    assert len(message) <= wire.MAX_MESSAGE


@given(cases(CTX))
@settings(max_examples=1500, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_each_mutation_breaks_what_it_claims(case: Case) -> None:
    problems = decode(case.wire).problems
    if case.detail == "no LOCAL_PREF":  # well-known discretionary: its absence is no problem
        decoded = decode(case.wire)
        assert decoded.problems == set() and 5 not in decoded.codes
    elif case.kind in CLAIMS:
        assert CLAIMS[case.kind](problems), (case.kind, case.detail, problems)
    elif case.kind == "max_size":
        assert problems == (set() if case.outcome == ACCEPTED else {"oversize"}), problems
        assert len(case.wire) >= wire.MAX_MESSAGE
    else:
        assert problems <= HARMLESS[case.kind], (case.kind, problems)
    # the setup is a valid announcement of exactly the case's prefixes
    setup = decode(wire.message(wire.UPDATE, case.setup))
    assert setup.problems == set() and sorted(setup.announced) == sorted(
        map(str, map(ip_network, case.prefixes))
    )
    assert case.outcome in OUTCOMES and case.rfc.startswith("RFC ")
    assert case.counter is None or case.outcome == TAW
    assert (case.rfc_says == RESET) == (case.notification is not None)
    assert bool(case.deviation) == (case.rfc_says != case.outcome)


def test_the_outcomes_rfc_7606_gives_per_attribute() -> None:
    """Spot checks of the table the grammar follows: a malformed attribute is treat-as-withdraw, but
    ATOMIC_AGGREGATE and AGGREGATOR are discarded (§7.6, §7.7) and the MP attributes reset (§7.11)."""
    from bench.fuzzgrammar import MALFORMED

    assert {code for code, (outcome, _) in MALFORMED.items() if outcome == DISCARD} == {6, 7}
    assert {code for code, (outcome, _) in MALFORMED.items() if outcome == RESET} == {14, 15}


# --------------------------------------------------------------------------------------------- the campaign
def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 'ip' not installed"
    if not Path(BIRD).exists():
        return "BIRD 2 not installed"
    return None


@pytest.mark.e2e
def test_fuzz_campaign(tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    result = fuzz.run(400, tmp_path / "results", seed=14, workdir=tmp_path / "work")
    assert result["bgpd_alive"]
    assert result["mismatches"] == [], fuzz.markdown(result)
    assert set(result["by_kind"]) == set(KINDS)
    assert {TAW, RESET, ACCEPTED} <= set(result["observed"])
    assert result["cases"] == 400
    assert (tmp_path / "results" / "fuzz.md").read_text().startswith("Fuzz campaign")
