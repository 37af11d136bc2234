"""Tests for bgpd.policy.importer.ImportPolicy: each static reject reason, and what is accepted."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from bgpd.model import Attributes
from bgpd.policy.importer import ImportPolicy, Reject

UNDERLAY = IPv4Address("192.168.100.10")
ROUTER_ID = IPv4Address("192.168.100.10")
PEER_NH = IPv4Address("192.168.100.3")


def policy(cluster_id: str | None = None) -> ImportPolicy:
    return ImportPolicy(
        pools=[IPv4Network("10.20.0.0/16"), IPv4Network("192.168.96.0/19")],
        underlay=UNDERLAY,
        own_addresses=[IPv4Address("10.20.7.1"), IPv4Address("172.17.0.1")],
        router_id=ROUTER_ID,
        cluster_id=None if cluster_id is None else IPv4Address(cluster_id),
    )


def N(text: str) -> IPv4Network:
    return IPv4Network(text)


def test_borrowed_host_route_inside_pool_accepted() -> None:
    assert policy().check(N("10.20.1.3/32"), PEER_NH, Attributes()) is None


@pytest.mark.parametrize("prefix", ["10.20.1.0/26", "10.20.0.0/16", "10.20.255.255/32"])
def test_block_inside_pool_accepted(prefix: str) -> None:
    assert policy().check(N(prefix), PEER_NH, Attributes(local_pref=100)) is None


def test_default_route_rejected() -> None:
    assert policy().check(N("0.0.0.0/0"), PEER_NH, Attributes()) is Reject.DEFAULT_ROUTE


def test_default_route_rejected_even_if_a_pool_is_everything() -> None:
    everything = ImportPolicy([N("0.0.0.0/0")], UNDERLAY, [], ROUTER_ID)
    assert everything.check(N("0.0.0.0/0"), PEER_NH, Attributes()) is Reject.DEFAULT_ROUTE


@pytest.mark.parametrize("prefix", ["10.21.0.0/26", "10.0.0.0/8", "10.20.0.0/15", "8.8.8.8/32"])
def test_outside_pool_rejected(prefix: str) -> None:
    assert policy().check(N(prefix), PEER_NH, Attributes()) is Reject.NOT_IN_POOL


@pytest.mark.parametrize("prefix", ["192.168.100.10/32", "192.168.100.0/24", "192.168.96.0/19"])
def test_prefix_containing_underlay_rejected(prefix: str) -> None:
    assert policy().check(N(prefix), PEER_NH, Attributes()) is Reject.CONTAINS_OWN_ADDRESS


def test_prefix_next_to_underlay_accepted() -> None:
    assert policy().check(N("192.168.100.11/32"), PEER_NH, Attributes()) is None


@pytest.mark.parametrize("next_hop", [str(UNDERLAY), "10.20.7.1", "172.17.0.1"])
def test_own_next_hop_rejected(next_hop: str) -> None:
    assert policy().check(N("10.20.1.0/26"), IPv4Address(next_hop), Attributes()) is Reject.OWN_NEXT_HOP


@pytest.mark.parametrize(
    "next_hop",
    ["0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.5", "239.255.255.255", "240.0.0.1", "255.255.255.255"],
)
def test_invalid_next_hop_rejected(next_hop: str) -> None:
    assert policy().check(N("10.20.1.0/26"), IPv4Address(next_hop), Attributes()) is Reject.INVALID_NEXT_HOP


@pytest.mark.parametrize("next_hop", ["1.0.0.1", "126.255.255.255", "128.0.0.1", "223.255.255.254"])
def test_valid_next_hop_edges_accepted(next_hop: str) -> None:
    assert policy().check(N("10.20.1.0/26"), IPv4Address(next_hop), Attributes()) is None


def test_own_originator_rejected() -> None:
    attrs = Attributes(originator_id=ROUTER_ID)
    assert policy().check(N("10.20.1.0/26"), PEER_NH, attrs) is Reject.OWN_ORIGINATOR


def test_foreign_originator_accepted() -> None:
    attrs = Attributes(originator_id=IPv4Address("192.168.100.3"))
    assert policy().check(N("10.20.1.0/26"), PEER_NH, attrs) is None


def test_cluster_loop_rejected() -> None:
    attrs = Attributes(cluster_list=(IPv4Address("1.0.0.2"), IPv4Address("1.0.0.1")))
    assert policy("1.0.0.1").check(N("10.20.1.0/26"), PEER_NH, attrs) is Reject.CLUSTER_LOOP


def test_cluster_list_without_own_cluster_accepted() -> None:
    attrs = Attributes(cluster_list=(IPv4Address("1.0.0.2"),))
    assert policy("1.0.0.1").check(N("10.20.1.0/26"), PEER_NH, attrs) is None
    # without a cluster id of our own, no cluster list loops
    assert (
        policy().check(N("10.20.1.0/26"), PEER_NH, Attributes(cluster_list=(IPv4Address("1.0.0.1"),))) is None
    )


def test_first_reason_wins() -> None:
    bad = Attributes(originator_id=ROUTER_ID, cluster_list=(IPv4Address("1.0.0.1"),))
    p = policy("1.0.0.1")
    assert p.check(N("0.0.0.0/0"), IPv4Address("127.0.0.1"), bad) is Reject.DEFAULT_ROUTE
    assert p.check(N("11.0.0.0/8"), IPv4Address("127.0.0.1"), bad) is Reject.NOT_IN_POOL
    assert p.check(N("192.168.100.0/24"), UNDERLAY, bad) is Reject.CONTAINS_OWN_ADDRESS
    assert p.check(N("10.20.1.0/26"), UNDERLAY, bad) is Reject.OWN_NEXT_HOP
    assert p.check(N("10.20.1.0/26"), IPv4Address("127.0.0.1"), bad) is Reject.INVALID_NEXT_HOP
    assert p.check(N("10.20.1.0/26"), PEER_NH, bad) is Reject.OWN_ORIGINATOR
    assert (
        p.check(N("10.20.1.0/26"), PEER_NH, Attributes(cluster_list=bad.cluster_list)) is Reject.CLUSTER_LOOP
    )


def test_reject_values_are_metric_labels() -> None:
    assert {r.value for r in Reject} == {
        "malformed",
        "not_in_pool",
        "default_route",
        "contains_own_address",
        "own_prefix",
        "own_next_hop",
        "invalid_next_hop",
        "own_originator",
        "cluster_loop",
    }
    assert str(Reject.NOT_IN_POOL) == "not_in_pool"
