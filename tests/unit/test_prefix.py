"""bgpd.prefix builds the same networks as ipaddress, faster: checked on arbitrary inputs."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from itertools import islice

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd import prefix

networks = st.builds(
    lambda a, n: IPv4Network((a & prefix.mask(n), n)), st.integers(0, 2**32 - 1), st.integers(0, 32)
)


@given(networks)
def test_from_int_and_parse_equal_ipaddress(net: IPv4Network) -> None:
    built = prefix.from_int(int(net.network_address), net.prefixlen)
    parsed = prefix.parse(str(net))
    for fast in (built, parsed):
        assert fast == net and net == fast
        assert hash(fast) == hash(net) == hash(fast)  # cached, and the same as a plain network's
        assert str(fast) == str(net)
        assert fast.broadcast_address == net.broadcast_address
        assert fast.prefixlen == net.prefixlen and fast.netmask == net.netmask
        assert {net: 1}[fast] == 1 and {fast: 1}[net] == 1
        assert list(islice(fast.hosts(), 3)) == list(islice(net.hosts(), 3))
        assert fast.subnet_of(IPv4Network("0.0.0.0/0")) and net.subnet_of(fast)


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(max_size=20),
        # near-misses of the fast path: leading zeros, long octets, missing parts
        st.text(alphabet="0123456789./", min_size=1, max_size=18),
    )
)
def test_parse_accepts_and_rejects_what_ipaddress_does(text: str) -> None:
    try:
        expected: IPv4Network | None = IPv4Network(text)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError):
            prefix.parse(text)
    else:
        got = prefix.parse(text)
        assert got == expected and str(got) == str(expected)


@pytest.mark.parametrize(
    "text", ["10.1.2.3/24", "010.1.2.0/24", "1.2.3.256/32", "1.2.3.0/33", "1.2.3/24", "", "1.2.3.4/"]
)
def test_invalid_prefixes_raise(text: str) -> None:
    with pytest.raises(ValueError):
        prefix.parse(text)


def test_host_route_without_length() -> None:
    assert prefix.parse("10.20.1.3") == IPv4Network("10.20.1.3/32")


@given(networks, networks)
def test_covers_is_subnet_of(outer: IPv4Network, inner: IPv4Network) -> None:
    assert prefix.covers(prefix.bits(outer), prefix.bits(inner)) == inner.subnet_of(outer)


def test_address_in_prefix_via_bits() -> None:
    net = prefix.parse("10.20.0.0/16")
    assert prefix.covers(prefix.bits(net), (int(IPv4Address("10.20.3.4")), 32))


@given(networks, networks)
def test_lean_prefixes_compare_and_order_like_ipaddress(a: IPv4Network, b: IPv4Network) -> None:
    fa, fb = prefix.from_int(int(a.network_address), a.prefixlen), prefix.parse(str(b))
    for x, y in ((fa, fb), (fa, b), (a, fb)):
        assert (x == y) == (a == b) and (x != y) == (a != b)
        assert (x < y) == (a < b) and (x > y) == (a > b) and (x <= y) == (a <= b) and (x >= y) == (a >= b)
    assert sorted([fb, fa]) == sorted([b, a])
    assert fa.network_address == a.network_address and type(fa.network_address) is IPv4Address
    if a.prefixlen >= 30:  # /31 and /32 have their own hosts() rules
        assert list(fa.hosts()) == list(a.hosts())
    assert a.network_address in fa and prefix.network_int(fa) == int(a.network_address)


@given(networks)
def test_lean_prefixes_pickle_and_copy(net: IPv4Network) -> None:
    import copy
    import pickle

    fast = prefix.parse(str(net))
    for clone in (pickle.loads(pickle.dumps(fast)), copy.copy(fast), copy.deepcopy(fast)):
        assert type(clone) is prefix.Prefix and clone == net and hash(clone) == hash(net)
