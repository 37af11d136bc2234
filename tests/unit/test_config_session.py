"""Session protection in the config (issue 14): TCP-MD5 passwords for peers, the mesh and reflector clients,
TTL security hops, and the per-peer prefix limit; every mistake one line naming file, line and key."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from bgpd import config as c
from bgpd.config_session import PrefixLimit

NODE = "node: {name: h, address: 192.168.100.10, asn: 64512}\n"
PEER = "bgp:\n  peers:\n    - address: 192.168.100.1\n      asn: 65001\n"


def session(cfg: c.Config, address: str) -> c.PeerConfig:
    return next(s for s in cfg.sessions() if s.address == ip_address(address))


def test_peer_protection_defaults_are_off() -> None:
    peer = c.parse(NODE + PEER, "t.yaml").bgp.peers[0]
    assert (peer.password, peer.ttl_security, peer.prefix_limit) == (None, None, None)


def test_peer_protection_keys() -> None:
    text = NODE + PEER + "      password: s3cret\n      ttl_security: 2\n      max_prefixes: 100\n"
    peer = c.parse(text, "t.yaml").bgp.peers[0]
    assert peer.password == "s3cret"
    assert peer.ttl_security == 2
    assert peer.prefix_limit == PrefixLimit(maximum=100, action="restart", restart_after=60)


def test_prefix_limit_warn_and_restart_after() -> None:
    warn = c.parse(NODE + PEER + "      max_prefixes: 5\n      max_prefixes_action: warn\n", "t.yaml")
    assert warn.bgp.peers[0].prefix_limit == PrefixLimit(5, "warn")
    text = NODE + PEER + "      max_prefixes: 5\n      max_prefixes_action: Restart\n      restart_after: 3\n"
    assert c.parse(text, "t.yaml").bgp.peers[0].prefix_limit == PrefixLimit(5, "restart", 3)


def test_mesh_password_reaches_every_mesh_session_and_the_clients() -> None:
    text = (
        NODE
        + "bgp:\n  mesh:\n    enabled: true\n    password: meshkey\n"
        + "    nodes: [192.168.100.10, 192.168.100.11, 192.168.100.12]\n"
        + "reflector: {cluster_id: 1.1.1.1, clients: [192.168.100.20]}\n"
    )
    cfg = c.parse(text, "t.yaml")
    assert {s.password for s in cfg.sessions()} == {"meshkey"}
    own = c.parse(text.replace("clients: [192.168.100.20]", "clients: [192.168.100.20], password: rr"), "t")
    assert session(own, "192.168.100.20").password == "rr"
    assert session(own, "192.168.100.11").password == "meshkey"


def test_dump_shows_the_new_keys() -> None:
    text = NODE + PEER + "      ttl_security: 1\n      max_prefixes: 7\n      max_prefixes_action: warn\n"
    dumped = c.dump(c.parse(text, "t.yaml"))
    assert "ttl_security: 1" in dumped
    assert "max_prefixes: 7" in dumped
    assert "max_prefixes_action: warn" in dumped
    assert c.parse(dumped, "dump.yaml").bgp.peers[0].prefix_limit == PrefixLimit(7, "warn")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("      ttl_security: 0\n", "t.yaml:6: bgp.peers[0].ttl_security: hop count 0 out of range 1..255"),
        ("      ttl_security: 256\n", "t.yaml:6: bgp.peers[0].ttl_security: hop count 256 out of range"),
        ("      max_prefixes: 0\n", "t.yaml:6: bgp.peers[0].max_prefixes: prefix count 0 out of range"),
        ("      max_prefixes_action: warn\n", "t.yaml:6: bgp.peers[0].max_prefixes_action: "),
        ("      restart_after: 5\n", "t.yaml:6: bgp.peers[0].restart_after: restart_after without"),
        (
            "      max_prefixes: 5\n      max_prefixes_action: drop\n",
            "t.yaml:7: bgp.peers[0].max_prefixes_action: bad action 'drop'",
        ),
        (
            "      max_prefixes: 5\n      max_prefixes_action: warn\n      restart_after: 5\n",
            "t.yaml:8: bgp.peers[0].restart_after: restart_after needs max_prefixes_action: restart",
        ),
        ("      password: '" + "x" * 81 + "'\n", "t.yaml:6: bgp.peers[0].password: TCP MD5 password longer"),
        ("      ttlSecurity: 1\n", "(Calico's ttlSecurity is 'ttl_security' here)"),
    ],
)
def test_protection_mistakes_are_one_line(extra: str, expected: str) -> None:
    with pytest.raises(c.ConfigError) as info:
        c.parse(NODE + PEER + extra, "t.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert expected in message, message


def test_mesh_password_mistake_names_its_key() -> None:
    text = NODE + 'bgp:\n  mesh:\n    enabled: false\n    password: "a\'b"\n'
    with pytest.raises(c.ConfigError) as info:
        c.parse(text, "t.yaml")
    assert str(info.value).startswith("t.yaml:5: bgp.mesh.password: password must not contain quotes")
