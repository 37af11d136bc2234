"""bgpd.prefix for IPv6, and its family-tagged keys: the same networks and addresses as ipaddress, checked on
arbitrary inputs, and IPv4 and IPv6 never confused (::/96-embedded and ::ffff:0:0/96-mapped ints included)."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from itertools import islice

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd import prefix

# 128-bit ints shaped like the addresses that matter: runs of zero hextets (what "::" compresses, where the
# formatting rules bite), IPv4-embedded (::a.b.c.d, the same ints as IPv4 addresses) and IPv4-mapped
# (::ffff:a.b.c.d, printed dotted by Python 3.13), link-local, and anything at all
hextet = st.one_of(st.just(0), st.just(0), st.just(0xFFFF), st.integers(0, 0xFFFF))
shaped = st.lists(hextet, min_size=8, max_size=8).map(lambda hs: sum(h << (16 * i) for i, h in enumerate(hs)))
addresses6 = st.one_of(
    shaped,
    st.integers(0, 2**128 - 1),
    st.integers(0, 2**32 - 1),  # ::a.b.c.d
    st.integers(0, 2**32 - 1).map(lambda a: (0xFFFF << 32) | a),  # ::ffff:a.b.c.d
    st.integers(0, 2**64 - 1).map(lambda a: (0xFE80 << 112) | a),  # fe80::/64
)
lengths6 = st.one_of(st.sampled_from([0, 1, 10, 48, 64, 96, 112, 122, 127, 128]), st.integers(0, 128))
networks6 = st.builds(lambda a, n: IPv6Network((a & prefix.mask(n, 6), n)), addresses6, lengths6)
networks4 = st.builds(
    lambda a, n: IPv4Network((a & prefix.mask(n), n)), st.integers(0, 2**32 - 1), st.integers(0, 32)
)
networks = st.one_of(networks4, networks6)


def lean(net: IPv4Network | IPv6Network) -> prefix.Prefix | prefix.Prefix6:
    return prefix.parse_any(str(net))


@given(networks6)
def test_from_int6_and_parse6_equal_ipaddress(net: IPv6Network) -> None:
    built = prefix.from_int6(int(net.network_address), net.prefixlen)
    parsed = prefix.parse6(str(net))
    for fast in (built, parsed, prefix.parse6(net.exploded), prefix.parse6(net.exploded.upper())):
        assert type(fast) is prefix.Prefix6
        assert fast == net and net == fast and (fast != net) is False and (net != fast) is False
        assert hash(fast) == hash(net)
        assert str(fast) == str(net) and fast.compressed == net.compressed and fast.exploded == net.exploded
        assert repr(fast) == f"Prefix6('{net}')"
        assert fast.network_address == net.network_address and type(fast.network_address) is IPv6Address
        assert fast.broadcast_address == net.broadcast_address and fast.hostmask == net.hostmask
        assert fast.prefixlen == net.prefixlen and fast.netmask == net.netmask
        assert fast.with_prefixlen == net.with_prefixlen and fast.num_addresses == net.num_addresses
        by_plain: dict[IPv6Network, int] = {net: 1}
        by_lean: dict[IPv6Network, int] = {fast: 1}
        assert by_plain[fast] == 1 and by_lean[net] == 1
        assert fast in {net} and net in {fast} and len({fast, net}) == 1
        assert list(islice(fast.hosts(), 3)) == list(islice(net.hosts(), 3))
        assert IPv6Network.subnet_of(fast, IPv6Network("::/0")) and net.subnet_of(fast)
        assert IPv6Network.subnet_of(fast, net)
        assert net.network_address in fast and prefix.network_int(fast) == int(net.network_address)
        assert set(vars(fast)) == {"_net", "netmask", "_prefixlen"}  # nothing cached in it by all this


@given(networks6, networks6)
def test_lean_prefixes6_compare_and_order_like_ipaddress(a: IPv6Network, b: IPv6Network) -> None:
    fa, fb = prefix.from_int6(int(a.network_address), a.prefixlen), prefix.parse6(str(b))
    for x, y in ((fa, fb), (fa, b), (a, fb)):
        assert (x == y) == (a == b) and (x != y) == (a != b)
        assert (x < y) == (a < b) and (x > y) == (a > b) and (x <= y) == (a <= b) and (x >= y) == (a >= b)
    assert sorted([fb, fa]) == sorted([b, a])
    assert (hash(fa) == hash(fb)) == (hash(a) == hash(b))
    assert fa.overlaps(fb) == a.overlaps(b) and fa.subnet_of(fb) == a.subnet_of(b)


@given(networks6)
def test_lean_prefixes6_pickle_and_copy(net: IPv6Network) -> None:
    fast = prefix.parse6(str(net))
    for clone in (pickle.loads(pickle.dumps(fast)), copy.copy(fast), copy.deepcopy(fast)):
        assert type(clone) is prefix.Prefix6 and clone == net and hash(clone) == hash(net)
    assert pickle.loads(pickle.dumps(net)) == fast  # and a plain one still unpickles as itself


@pytest.mark.parametrize("length", [0, 64, 120, 126, 127, 128])
def test_hosts_as_ipaddress_without_a_closure(length: int) -> None:
    net = IPv6Network(((0xFD00 << 112) & prefix.mask(length, 6), length))
    fast = prefix.parse6(str(net))
    assert list(islice(fast.hosts(), 5)) == list(islice(net.hosts(), 5))
    assert "hosts" not in vars(fast)  # IPv6Network keeps a closure in every /127 and /128


def test_same_layout_as_ipaddress() -> None:
    """`_new6` sets what IPv6Network.__init__ sets (network_address as the int `_net`); a Python whose
    ipaddress keeps something else would break here rather than in the daemon."""
    for length in (64, 127, 128):
        plain = set(vars(IPv6Network((0xFD00 << 112, length)))) - {"hosts"}
        assert plain == {"network_address", "netmask", "_prefixlen"}
        assert set(vars(prefix.from_int6(0xFD00 << 112, length))) == {"_net", "netmask", "_prefixlen"}


# --- text ---------------------------------------------------------------------------------------------


def _expected(text: str) -> IPv6Network | None:
    """What parse6 must return for text: IPv6Network(text), but never with a zone id."""
    try:
        net = IPv6Network(text)
    except ValueError:
        return None
    return None if net.network_address.scope_id is not None else net


def _check_parse6(text: str) -> None:
    expected = _expected(text)
    if expected is None:
        with pytest.raises(ValueError):
            prefix.parse6(text)
    else:
        got = prefix.parse6(text)
        assert type(got) is prefix.Prefix6 and got == expected and str(got) == str(expected)


@settings(max_examples=300)
@given(
    st.one_of(
        st.text(max_size=24),
        st.text(alphabet="0123456789abcdefABCDEF:./%", min_size=1, max_size=44),
        st.text(alphabet="0f:/", min_size=1, max_size=44),
    )
)
def test_parse6_accepts_and_rejects_what_ipaddress_does(text: str) -> None:
    _check_parse6(text)


@st.composite
def near_miss_texts(draw: st.DrawFn) -> str:
    """IPv6 prefix texts, often valid and often not: 7 to 9 hextets in any case, with or without leading
    zeros, now and then one of 5 digits, empty, not hex, a dotted quad, a zone id or another "::"; "::"
    for a run of them (of any length, even one or none); and a length that may be missing, too long, or
    have leading zeros or a sign."""
    hextets = [
        draw(st.sampled_from(["%x", "%04x", "%X", "%02X"])) % draw(hextet)
        for _ in range(draw(st.sampled_from([8, 8, 8, 7, 9])))
    ]
    if draw(st.integers(0, 5)) == 0:
        oddity = draw(st.sampled_from([f"{draw(hextet):05x}", "", "g", "1.2.3.4", "%eth0", "::"]))
        hextets.insert(draw(st.integers(0, len(hextets))), oddity)
    if draw(st.booleans()):
        start = draw(st.integers(0, len(hextets)))
        end = draw(st.integers(start, len(hextets)))
        text = ":".join(hextets[:start]) + "::" + ":".join(hextets[end:])
    else:
        text = ":".join(hextets)
    length = draw(st.one_of(st.none(), st.integers(0, 130), st.sampled_from(["064", "0128", "", "+1", "1 "])))
    return text if length is None else f"{text}/{length}"


@settings(max_examples=1000)
@given(near_miss_texts())
def test_parse6_near_misses_as_ipaddress(text: str) -> None:
    _check_parse6(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("::/0", "::/0"),
        ("::", "::/128"),
        ("::/128", "::/128"),
        ("::1/128", "::1/128"),
        ("::1", "::1/128"),
        ("fe80::/10", "fe80::/10"),
        ("FE80::/10", "fe80::/10"),
        ("2001:DB8:0:0:0:0:0:0/32", "2001:db8::/32"),
        ("fd00:0010:0020:0000:0000:0000:0000:0000/48", "fd00:10:20::/48"),
        ("fd00:10:20::/048", "fd00:10:20::/48"),
        ("::/0128", "::/128"),
        ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0/128"),  # "::" for a single zero hextet
        ("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8/128"),
        ("1:0:0:2:0:0:0:3", "1:0:0:2::3/128"),  # the longest run is compressed
        ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4/128"),  # the first of equal runs
        ("::1.2.3.4/128", "::102:304/128"),
        ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304/128"),
        ("::ffff:0:0/96", "::ffff:0:0/96"),
        ("::ffff:1.2.3.4/128", str(IPv6Network("::ffff:1.2.3.4/128"))),  # dotted from Python 3.13
    ],
)
def test_valid_prefixes6(text: str, expected: str) -> None:
    got = prefix.parse6(text)
    assert got == IPv6Network(text) and str(got) == expected
    assert prefix.parse_any(text) == got and prefix.family(prefix.parse_any(text)) == 6


@pytest.mark.parametrize(
    "text",
    [
        "::1/64",  # host bits
        "fe80::1/10",
        "fd00:10:20::1/48",
        "::/129",
        "::/1280",
        "::/-1",
        "::/+1",
        "::/ 1",
        "::/",
        "/64",
        "",
        ":",
        ":::",
        "::/0/0",
        "1::2::3",
        ":1::",
        "1:::",
        "1::2:",
        ":1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7",
        "1:2:3:4:5:6:7:8:9",
        "1:2:3:4::5:6:7:8",
        "12345::",
        "g::",
        " ::",
        ":: ",
        "::1.2.3",
        "::01.2.3.4",
        "fe80::1%eth0",  # zone ids: IPv6Network takes them, a route has none
        "fe80::%eth0/64",
        "fe80::1%eth0/128",
        "10.0.0.0/8",
    ],
)
def test_invalid_prefixes6_raise(text: str) -> None:
    with pytest.raises(ValueError):
        prefix.parse6(text)


def test_zone_ids_are_what_ipaddress_takes_and_parse6_refuses() -> None:
    assert IPv6Network("fe80::1%eth0/128").network_address.scope_id == "eth0"
    with pytest.raises(ValueError, match="zone id"):
        prefix.parse6("fe80::1%eth0/128")


@pytest.mark.parametrize(
    ("address", "length"), [(1, 64), (0, 129), (0, -1), (-1, 128), (2**128, 128), (2**128, 0)]
)
def test_from_int6_refuses(address: int, length: int) -> None:
    with pytest.raises(ValueError):
        prefix.from_int6(address, length)


@given(networks)
def test_parse_any_picks_the_family(net: IPv4Network | IPv6Network) -> None:
    got = lean(net)
    assert type(got) is (prefix.Prefix if net.version == 4 else prefix.Prefix6)
    assert got == net and prefix.family(got) == prefix.family(net) == net.version


def test_parse_any_errors() -> None:
    for text in ("10.0.0.1/8", "::1/64", "", "x", "fe80::1%eth0"):
        with pytest.raises(ValueError):
            prefix.parse_any(text)


# --- addresses --------------------------------------------------------------------------------------


@given(addresses6, addresses6)
def test_address6_equals_and_hashes_as_ipaddress(a: int, b: int) -> None:
    fast, plain = prefix.Address6(a), IPv6Address(a)
    assert fast == plain and plain == fast and hash(fast) == hash(plain) and str(fast) == str(plain)
    by_plain: dict[IPv6Address, int] = {plain: 1}
    by_lean: dict[IPv6Address, int] = {fast: 1}
    assert by_plain[fast] == 1 and by_lean[plain] == 1
    assert (fast < prefix.Address6(b)) == (plain < IPv6Address(b))
    assert (fast == prefix.Address6(b)) == (a == b)
    assert prefix.Address6(str(plain)) == fast == prefix.Address6(plain.packed)
    for clone in (pickle.loads(pickle.dumps(fast)), copy.copy(fast), copy.deepcopy(fast)):
        assert type(clone) is prefix.Address6 and clone == plain and hash(clone) == hash(plain)
    assert prefix.family(fast) == 6


def test_address6_keeps_the_zone_id_as_ipaddress() -> None:
    scoped = prefix.Address6("fe80::1%eth0")
    assert scoped == IPv6Address("fe80::1%eth0") and hash(scoped) == hash(IPv6Address("fe80::1%eth0"))
    assert scoped != prefix.Address6("fe80::1") and str(scoped) == "fe80::1%eth0"
    assert pickle.loads(pickle.dumps(scoped)).scope_id == "eth0"
    for bad in ("fe80::1/128", "1.2.3.4", "", "::g"):
        with pytest.raises(ValueError):
            prefix.Address6(bad)


# --- keys ---------------------------------------------------------------------------------------------


@given(networks6, networks6)
def test_covers6_is_subnet_of(outer: IPv6Network, inner: IPv6Network) -> None:
    assert prefix.covers(prefix.bits(outer), prefix.bits(inner)) == inner.subnet_of(outer)
    assert prefix.covers(prefix.bits(lean(outer)), prefix.bits(lean(inner))) == inner.subnet_of(outer)


@given(networks, networks)
def test_keys_never_confuse_the_families(a: IPv4Network | IPv6Network, b: IPv4Network | IPv6Network) -> None:
    ka, kb = prefix.bits(a), prefix.bits(b)
    assert ka == prefix.bits(lean(a)) and prefix.key_family(ka) == a.version
    assert (ka == kb) == (a == b) and (hash(ka) == hash(kb)) >= (a == b)
    same_family = a.version == b.version
    assert prefix.covers(ka, kb) == (same_family and b.subnet_of(a))  # type: ignore[arg-type]
    # keys sort IPv4 first, each family as ipaddress sorts it
    assert (ka < kb) == (a.version < b.version or (same_family and a < b))  # type: ignore[operator]
    assert prefix.from_key(ka) == a and type(prefix.from_key(ka)) is type(lean(a))


@given(st.integers(0, 2**32 - 1), st.integers(0, 32), st.sampled_from([0, 0xFFFF << 32]))
def test_ipv4_ints_inside_ipv6_are_not_ipv4(address: int, length: int, embedding: int) -> None:
    """::a.b.c.d/96+n and ::ffff:a.b.c.d/96+n have the int of a.b.c.d/n (the first one the very same):
    their keys must not cover or be covered by the IPv4 prefix's, in either direction, nor their hosts."""
    network = address & prefix.mask(length)
    v4 = prefix.from_int(network, length)
    v6 = prefix.from_int6(embedding | network, 96 + length)
    k4, k6 = prefix.bits(v4), prefix.bits(v6)
    assert k4 != k6 and len({k4, k6}) == 2 and v4 != v6 and len({v4, v6}) == 2
    assert not prefix.covers(k4, k6) and not prefix.covers(k6, k4)
    assert not prefix.covers(k4, prefix.host_key(IPv6Address(embedding | address)))
    assert not prefix.covers(k6, prefix.host_key(IPv4Address(address)))
    assert not prefix.covers(k6, (address, 32))  # an IPv4 key written by hand, as the policy code does
    assert prefix.covers(k4, (address, 32)) and prefix.covers(k4, prefix.host_key(IPv4Address(address)))
    assert prefix.covers(k6, prefix.host_key(IPv6Address(embedding | address)))
    assert prefix.network_int(v6) & 0xFFFFFFFF == prefix.network_int(v4) == network


@pytest.mark.parametrize("length", range(33))
def test_same_int_and_length_in_both_families(length: int) -> None:
    """0.0.0.0/n and ::/n: the same (int, length) pair and the same hash, two different prefixes."""
    v4, v6 = prefix.from_int(0, length), prefix.from_int6(0, length)
    assert hash(v4) == hash(IPv4Network((0, length))) and hash(v6) == hash(IPv6Network((0, length)))
    assert v4 != v6 and v6 != v4 and len({v4, v6, IPv4Network((0, length)), IPv6Network((0, length))}) == 2
    k4, k6 = prefix.bits(v4), prefix.bits(v6)
    assert k4 == (0, length) and k4 != k6 and prefix.key_family(k4) == 4 and prefix.key_family(k6) == 6
    assert not prefix.covers(k4, k6) and not prefix.covers(k6, k4)
    assert not prefix.covers(k6, (0, 32)) and not prefix.covers(k4, prefix.host_key(IPv6Address(0)))


def test_default_routes_of_the_two_families() -> None:
    v4, v6 = prefix.parse("0.0.0.0/0"), prefix.parse6("::/0")
    assert hash(v4) == hash(v6) and v4 != v6 and len({v4, v6}) == 2  # same hash (0), not equal
    assert prefix.covers(prefix.bits(v4), prefix.bits(prefix.parse("10.0.0.0/8")))
    assert prefix.covers(prefix.bits(v6), prefix.bits(prefix.parse6("fd00::/8")))
    assert not prefix.covers(prefix.bits(v4), prefix.bits(v6))
    assert not prefix.covers(prefix.bits(v6), prefix.bits(v4))
    assert not prefix.covers(prefix.bits(v6), prefix.bits(prefix.parse("10.0.0.0/8")))
    with pytest.raises(TypeError):  # as between plain ipaddress networks
        _ = v4 < v6  # type: ignore[operator]


@given(networks, st.one_of(addresses6.map(IPv6Address), st.integers(0, 2**32 - 1).map(IPv4Address)))
def test_host_key_is_membership(net: IPv4Network | IPv6Network, address: IPv4Address | IPv6Address) -> None:
    assert prefix.covers(prefix.bits(net), prefix.host_key(address)) == (address in net)
    assert prefix.key_family(prefix.host_key(address)) == address.version
    assert prefix.from_key(prefix.host_key(address)).network_address == address


@given(addresses6, st.integers(0, 128))
def test_key6_is_bits_of_the_prefix(address: int, length: int) -> None:
    network = address & prefix.mask(length, 6)
    assert prefix.key6(network, length) == prefix.bits(IPv6Network((network, length)))
    assert prefix.from_key(prefix.key6(network, length)) == IPv6Network((network, length))


@pytest.mark.parametrize("key", [(1, 8), (2**32, 32), (5, -1), (1 << 129, -1), (0, -1), (0, -130)])
def test_from_key_refuses_what_no_prefix_gives(key: tuple[int, int]) -> None:
    with pytest.raises((ValueError, IndexError)):
        prefix.from_key(key)


@pytest.mark.parametrize(("address", "length"), [(0, 129), (0, -1), (-1, 0), (2**128, 128)])
def test_key6_refuses(address: int, length: int) -> None:
    with pytest.raises(ValueError):
        prefix.key6(address, length)


def test_masks_of_both_families() -> None:
    for length in range(33):
        assert prefix.mask(length) == prefix.mask(length, 4) == int(IPv4Network((0, length)).netmask)
    for length in range(129):
        assert prefix.mask(length, 6) == int(IPv6Network((0, length)).netmask)


@given(networks)
def test_network_int_of_both_families(net: IPv4Network | IPv6Network) -> None:
    assert prefix.network_int(net) == prefix.network_int(lean(net)) == int(net.network_address)


def test_memory_per_prefix6() -> None:
    """A Prefix6 keeps a route's memory near a Prefix's (issue 11: ≤ 500 B per route, IPv6 too): the
    same three attributes, one of them a 128-bit int instead of a 32-bit one, nothing cached by use (the
    tests above used every property: none may have grown the layout that new instances get)."""
    import tracemalloc

    def bytes_each(make: Callable[[int], object]) -> float:
        least = float("inf")
        for _ in range(3):  # the first round also pays for what tracemalloc and the allocator set up
            made: list[object] = []
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                made.extend(make(i) for i in range(10_000))
                least = min(least, (tracemalloc.get_traced_memory()[0] - before) / 10_000)
            finally:
                tracemalloc.stop()
        return least

    def used(net: prefix.Prefix6) -> prefix.Prefix6:
        hash(net), str(net), net == net, prefix.bits(net)  # what a route's prefix goes through
        return net

    lean6 = bytes_each(lambda i: used(prefix.from_int6((0xFD00 << 112) | i, 128)))
    lean4 = bytes_each(lambda i: prefix.from_int(0x0A000000 | i, 32))
    plain6 = bytes_each(lambda i: IPv6Network(((0xFD00 << 112) | i, 128)))
    assert lean6 < 200 and lean6 <= lean4 + 24 and lean6 < plain6 / 2
    assert set(vars(used(prefix.parse6("fd00:10:20::3a")))) == {"_net", "netmask", "_prefixlen"}
