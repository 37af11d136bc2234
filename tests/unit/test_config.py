"""Tests for bgpd.config: parsing, normalization, error locations, sessions() and the dump round trip."""

from __future__ import annotations

import textwrap
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bgpd import config as c
from bgpd.config import (
    BgpConfig,
    Config,
    ConfigError,
    ExportConfig,
    KernelConfig,
    MeshConfig,
    NodeConfig,
    PeerConfig,
    PoolConfig,
    RuntimeConfig,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
KNOWN_EXAMPLES = ("host.yaml", "host0.yaml", "host1.yaml")

A = IPv4Address
A6 = IPv6Address

MINIMAL = """\
node:
  name: host0
  address: 192.168.100.10
  asn: 64512
"""


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the `occurrence`-th line containing `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} not found {occurrence} times"
    return hits[occurrence - 1]


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        c.parse(text, "t.yaml")
    return info.value


def check_error(text: str, needle: str, keypath: str, message: str = "", occurrence: int = 1) -> ConfigError:
    text = textwrap.dedent(text)
    err = error(text)
    line = line_of(text, needle, occurrence)
    prefix = f"t.yaml:{line}: {keypath}: " if keypath else f"t.yaml:{line}: "
    assert str(err).startswith(prefix), f"{err} does not start with {prefix!r}"
    assert (err.file, err.line, err.keypath) == ("t.yaml", line, keypath)
    assert message in err.message
    return err


def check_exact(text: str, needle: str, expected: str, occurrence: int = 1) -> None:
    """The error is exactly ``t.yaml:LINE: `` + ``expected``, LINE being that of the needle."""
    text = textwrap.dedent(text)
    line = line_of(text, needle, occurrence)
    assert str(error(text)) == f"t.yaml:{line}: {expected}"


# ------------------------------------------------------------------------------------- normalization


def test_minimal_defaults() -> None:
    cfg = c.parse(MINIMAL, "m.yaml")
    assert cfg.node == NodeConfig(
        name="host0", address=A("192.168.100.10"), asn=64512, router_id=A("192.168.100.10")
    )
    assert cfg.bgp == BgpConfig(port=179, hold_time=90, graceful_restart=120, mesh=MeshConfig(), peers=())
    assert cfg.pools == ()
    assert cfg.export == ExportConfig(protocols=(3, 80), interfaces=("cali*",))
    assert cfg.kernel == KernelConfig(protocol=12, table=254, metric=32, install=True, stale_timeout=120.0)
    assert cfg.runtime == RuntimeConfig(dir="/run/bgpd", log_level="info")
    assert cfg.source == "m.yaml"
    assert cfg.sessions() == ()


def test_names_converted_and_explicit_values() -> None:
    cfg = c.parse(
        MINIMAL
        + """\
  router_id: 1.2.3.4
export:
  protocols: [boot, static, "80", 12]
  interfaces: ["cali*", "tap?"]
kernel:
  protocol: static
  table: local
  metric: 0
  install: false
  stale_timeout: 5
runtime:
  log_level: DEBUG
pools:
  - cidr: 10.20.0.0/16
  - cidr: 10.30.0.0/24
    export: false
"""
    )
    assert cfg.node.router_id == A("1.2.3.4")
    assert cfg.export.protocols == (3, 4, 80, 12)
    assert cfg.export.interfaces == ("cali*", "tap?")
    assert cfg.kernel == KernelConfig(protocol=4, table=255, metric=0, install=False, stale_timeout=5.0)
    assert isinstance(cfg.kernel.stale_timeout, float)
    assert cfg.runtime.log_level == "debug"
    assert cfg.pools == (
        PoolConfig(IPv4Network("10.20.0.0/16"), True),
        PoolConfig(IPv4Network("10.30.0.0/24"), False),
    )


def test_kernel_names_main_bird() -> None:
    cfg = c.parse(MINIMAL + "kernel:\n  protocol: bird\n  table: main\n")
    assert (cfg.kernel.protocol, cfg.kernel.table) == (12, 254)


def test_null_sections_mean_defaults() -> None:
    cfg = c.parse(MINIMAL + "bgp:\nexport:\nkernel:\nruntime:\npools:\n")
    assert cfg == c.parse(MINIMAL)


def test_protocol_and_table_numbers() -> None:
    assert c.protocol_number("boot") == 3
    assert c.protocol_number("static") == 4
    assert c.protocol_number("bird") == 12
    assert c.protocol_number("kernel") == 2
    assert c.protocol_number(80) == 80
    assert c.protocol_number("80") == 80
    assert c.protocol_number(0) == 0
    assert c.protocol_number(255) == 255
    assert c.table_number("main") == 254
    assert c.table_number("local") == 255
    assert c.table_number("default") == 253
    assert c.table_number(100) == 100
    assert c.table_number(2**32 - 1) == 2**32 - 1
    for bad in ("nosuch", 256, -1, True):
        with pytest.raises(ValueError):
            c.protocol_number(bad)
    for bad_table in ("nosuch", 0, 2**32, "unspec"):
        with pytest.raises(ValueError):
            c.table_number(bad_table)


def test_config_error_format() -> None:
    e = ConfigError("host.yaml", 7, "bgp.mesh.nodes[2]", "invalid IPv4 address 'x'")
    assert str(e) == "host.yaml:7: bgp.mesh.nodes[2]: invalid IPv4 address 'x'"
    assert str(ConfigError("f", 1, "", "empty")) == "f:1: empty"


# ------------------------------------------------------------------------------------------ sessions


def test_sessions_mesh_passive_rule_and_peers() -> None:
    cfg = c.parse(
        MINIMAL
        + """\
bgp:
  port: 1790
  mesh:
    enabled: true
    nodes: [192.168.100.12, 192.168.100.10, 192.168.100.3]
  peers:
    - address: 192.168.100.2
      asn: 65000
      passive: true
      hold_time: 30
      password: secret
      description: tor
"""
    )
    assert cfg.sessions() == (
        PeerConfig(A("192.168.100.12"), 64512, port=1790, passive=True),
        PeerConfig(A("192.168.100.3"), 64512, port=1790, passive=False),
        PeerConfig(
            A("192.168.100.2"),
            65000,
            port=179,
            passive=True,
            hold_time=30,
            password="secret",
            description="tor",
        ),
    )


def test_sessions_mesh_disabled_ignores_nodes() -> None:
    cfg = c.parse(
        MINIMAL
        + """\
bgp:
  mesh:
    enabled: false
    nodes: [192.168.100.11, 192.168.100.2]
  peers:
    - {address: 192.168.100.2, asn: 64512}
"""
    )
    assert cfg.bgp.mesh.nodes == (A("192.168.100.11"), A("192.168.100.2"))
    assert cfg.sessions() == (PeerConfig(A("192.168.100.2"), 64512),)


# ------------------------------------------------------------------------------------------ errors


def test_error_empty_file() -> None:
    for text in ("", "# just a comment\n", "---\n"):
        err = error(text)
        assert str(err).startswith("t.yaml:1: ") and err.keypath == ""


def test_error_top_level_not_mapping() -> None:
    err = error("- a\n- b\n")
    assert str(err) == "t.yaml:1: top level must be a mapping, got list"


def test_error_yaml_syntax() -> None:
    text = MINIMAL + "bgp:\n  port: [1, 2\n"
    err = error(text)
    assert err.line >= line_of(text, "port:")
    assert "YAML syntax error" in str(err)
    check_error(MINIMAL + "bgp:\n   port: 1\n  hold_time: 3\n", "hold_time", "", "YAML syntax error")


def test_error_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        c.load(missing)
    assert str(info.value).startswith(f"{missing}:1: cannot read config")


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(MINIMAL + "bgp:\n  hold_tme: 3\n")
    with pytest.raises(ConfigError) as info:
        c.load(path)
    assert str(info.value).startswith(f"{path}:6: bgp: unknown key 'hold_tme' (did you mean 'hold_time'?)")
    path.write_text(MINIMAL)
    assert c.load(str(path)).source == str(path)


def test_error_unknown_key_with_suggestion() -> None:
    err = check_error(MINIMAL + "bgp:\n  port: 179\n  hold_tme: 30\n", "hold_tme", "bgp")
    assert err.message == "unknown key 'hold_tme' (did you mean 'hold_time'?)"


def test_error_unknown_top_level_key() -> None:
    err = check_error(MINIMAL + "kernal:\n  table: main\n", "kernal", "")
    assert err.message == "unknown key 'kernal' (did you mean 'kernel'?)"
    err = check_error(MINIMAL + "zzzzzz: 1\n", "zzzzzz", "")
    assert err.message == "unknown key 'zzzzzz'"


def test_error_unknown_key_in_list_item() -> None:
    text = MINIMAL + "bgp:\n  peers:\n    - address: 192.168.100.2\n      asn: 1\n      pasive: true\n"
    check_error(text, "pasive", "bgp.peers[0]", "did you mean 'passive'")


def test_error_duplicate_key() -> None:
    check_error(MINIMAL + "bgp:\n  port: 179\n  port: 180\n", "port: 180", "bgp.port", "duplicate key")


def test_error_wrong_type_string_for_int() -> None:
    check_error(MINIMAL + "bgp:\n  port: '179'\n", "port", "bgp.port", "expected an integer, got string")


def test_error_wrong_type_bool_is_not_int() -> None:
    check_error(MINIMAL + "bgp:\n  hold_time: yes\n", "hold_time", "bgp.hold_time", "got boolean")


def test_error_wrong_type_list_for_mapping() -> None:
    check_error(MINIMAL + "bgp:\n  mesh: [1, 2]\n", "mesh", "bgp.mesh", "expected a mapping, got list")
    check_error(MINIMAL + "kernel:\n  - table\n", "kernel", "kernel", "expected a mapping, got list")


def test_error_wrong_type_mapping_for_list() -> None:
    check_error(MINIMAL + "pools:\n  cidr: 10.0.0.0/8\n", "pools", "pools", "expected a list, got mapping")


def test_error_wrong_type_int_for_bool() -> None:
    check_error(MINIMAL + "kernel:\n  install: 1\n", "install", "kernel.install", "expected a boolean")


def test_error_node_not_mapping() -> None:
    check_error("node: host0\n", "node", "node", "expected a mapping, got string")


def test_error_invalid_cidr() -> None:
    text = MINIMAL + "pools:\n  - cidr: 10.20.0.0/16\n  - cidr: 10.300.0.0/16\n"
    check_error(text, "10.300", "pools[1].cidr", "invalid CIDR '10.300.0.0/16'")
    check_error(MINIMAL + "pools:\n  - cidr: 10.20.0.0\n", "cidr", "pools[0].cidr", "invalid CIDR")
    check_error(MINIMAL + "pools:\n  - cidr: 10.20.0.0/33\n", "cidr", "pools[0].cidr", "invalid CIDR")


def test_error_cidr_host_bits() -> None:
    err = check_error(MINIMAL + "pools:\n  - cidr: 10.20.0.1/16\n", "cidr", "pools[0].cidr")
    assert err.message == "10.20.0.1/16 has host bits set"


def test_error_overlapping_pools() -> None:
    text = MINIMAL + "pools:\n  - cidr: 10.20.0.0/16\n  - cidr: 10.20.5.0/24\n"
    check_error(text, "10.20.5.0", "pools[1].cidr", "overlaps pools[0]")
    text = MINIMAL + "pools:\n  - cidr: 10.20.0.0/16\n  - cidr: 10.20.0.0/16\n"
    check_error(text, "10.20.0.0/16", "pools[1].cidr", "duplicate pool", occurrence=2)


def test_error_invalid_ipv4_address() -> None:
    text = MINIMAL + "bgp:\n  mesh:\n    nodes:\n      - 192.168.100.10\n      - 192.168.100.11\n      - x\n"
    err = check_error(text, "- x", "bgp.mesh.nodes[2]")
    assert err.message == "invalid IPv4 address 'x'"
    check_error(MINIMAL.replace("192.168.100.10", "10.0.0.256"), "address", "node.address", "invalid IPv4")
    check_error(MINIMAL.replace("192.168.100.10", "0.0.0.0"), "address", "node.address", "not a unicast")
    check_error(MINIMAL + "  router_id: 1.2.3\n", "router_id", "node.router_id", "invalid IPv4 address")


def test_error_asn_range() -> None:
    check_error(
        MINIMAL.replace("asn: 64512", "asn: 0"), "asn", "node.asn", "ASN 0 out of range 1..4294967295"
    )
    text = MINIMAL + "bgp:\n  peers:\n    - address: 192.168.100.2\n      asn: 4294967296\n"
    check_error(text, "4294967296", "bgp.peers[0].asn", "out of range")


def test_error_port_range() -> None:
    check_error(MINIMAL + "bgp:\n  port: 0\n", "port", "bgp.port", "port 0 out of range 1..65535")
    text = MINIMAL + "bgp:\n  peers:\n    - address: 192.168.100.2\n      asn: 1\n      port: 65536\n"
    check_error(text, "65536", "bgp.peers[0].port", "out of range 1..65535")


@pytest.mark.parametrize("value", [1, 2, 65536, -1])
def test_error_hold_time(value: int) -> None:
    check_error(
        MINIMAL + f"bgp:\n  hold_time: {value}\n", "hold_time", "bgp.hold_time", "must be 0 or 3..65535"
    )


@pytest.mark.parametrize("value", [0, 3, 65535])
def test_valid_hold_time(value: int) -> None:
    assert c.parse(MINIMAL + f"bgp:\n  hold_time: {value}\n").bgp.hold_time == value


def test_error_peer_hold_time() -> None:
    text = MINIMAL + "bgp:\n  peers:\n    - address: 192.168.100.2\n      asn: 1\n      hold_time: 2\n"
    check_error(text, "hold_time", "bgp.peers[0].hold_time", "must be 0 or 3..65535")


def test_error_unknown_protocol_name() -> None:
    text = MINIMAL + "export:\n  protocols:\n    - boot\n    - bot\n"
    check_error(text, "- bot", "export.protocols[1]", "unknown routing protocol name 'bot'")
    check_error(
        MINIMAL + "kernel:\n  protocol: birdd\n", "protocol", "kernel.protocol", "did you mean 'bird'"
    )
    check_error(MINIMAL + "kernel:\n  protocol: 256\n", "protocol", "kernel.protocol", "out of range")


def test_error_unknown_table_name() -> None:
    check_error(
        MINIMAL + "kernel:\n  table: mian\n", "table", "kernel.table", "unknown routing table name 'mian'"
    )
    check_error(MINIMAL + "kernel:\n  table: 0\n", "table", "kernel.table", "out of range")


def test_error_bad_log_level() -> None:
    check_error(
        MINIMAL + "runtime:\n  log_level: verbose\n", "log_level", "runtime.log_level", "bad log level"
    )


def test_error_empty_node_name() -> None:
    check_error(MINIMAL.replace("name: host0", "name: ''"), "name", "node.name", "must not be empty")
    check_error(MINIMAL.replace("name: host0", "name: a b"), "name", "node.name", "whitespace")


def test_error_empty_interface_pattern() -> None:
    check_error(MINIMAL + "export:\n  interfaces: ['']\n", "interfaces", "export.interfaces[0]", "empty")


def test_error_select_defer_time_and_audit_interval() -> None:
    check_error(
        MINIMAL + "bgp:\n  select_defer_time: -5\n",
        "select_defer_time",
        "bgp.select_defer_time",
        "out of range",
    )
    check_error(MINIMAL + "kernel:\n  audit_interval: yes\n", "audit", "kernel.audit_interval", "")


def test_error_stale_timeout() -> None:
    check_error(MINIMAL + "kernel:\n  stale_timeout: -1\n", "stale", "kernel.stale_timeout", "out of range")
    check_error(MINIMAL + "kernel:\n  stale_timeout: .inf\n", "stale", "kernel.stale_timeout", "out of range")


def test_error_password_too_long() -> None:
    text = (
        MINIMAL + f"bgp:\n  peers:\n    - address: 192.168.100.2\n      asn: 1\n      password: {'x' * 81}\n"
    )
    check_error(text, "password", "bgp.peers[0].password", "longer than 80")


def test_error_own_address_missing_from_mesh() -> None:
    text = MINIMAL + "bgp:\n  mesh:\n    enabled: true\n    nodes:\n      - 192.168.100.11\n"
    check_error(text, "nodes:", "bgp.mesh.nodes", "192.168.100.10")
    text = MINIMAL + "bgp:\n  mesh:\n    enabled: true\n"
    check_error(text, "mesh:", "bgp.mesh.nodes", "does not list this node's address")


def test_error_duplicate_mesh_node() -> None:
    nodes = "".join(f"      - 192.168.100.{n}\n" for n in (10, 11, 10))
    text = MINIMAL + "bgp:\n  mesh:\n    nodes:\n" + nodes
    check_error(text, "- 192.168.100.10", "bgp.mesh.nodes[2]", "duplicate mesh node", occurrence=2)


def test_error_duplicate_peer() -> None:
    text = MINIMAL + textwrap.dedent(
        """\
        bgp:
          peers:
            - address: 192.168.100.2
              asn: 1
            - address: 192.168.100.2
              asn: 2
        """
    )
    check_error(text, "192.168.100.2", "bgp.peers[1].address", "duplicate peer", occurrence=2)


def test_error_peer_is_mesh_node() -> None:
    text = MINIMAL + textwrap.dedent(
        """\
        bgp:
          mesh:
            enabled: true
            nodes: [192.168.100.10, 192.168.100.11]
          peers:
            - address: 192.168.100.11
              asn: 1
        """
    )
    check_error(text, "- address: 192.168.100.11", "bgp.peers[0].address", "also a mesh node")
    # With the mesh disabled the same peer is fine.
    assert len(c.parse(text.replace("enabled: true", "enabled: false")).sessions()) == 1


def test_error_peer_is_own_address() -> None:
    text = MINIMAL + "bgp:\n  peers:\n    - address: 192.168.100.10\n      asn: 1\n"
    check_error(text, "- address", "bgp.peers[0].address", "own address")


def test_error_missing_required_key() -> None:
    text = "node:\n  name: host0\n  address: 192.168.100.10\n"
    err = check_error(text, "node:", "node.asn")
    assert err.message == "required key missing"
    check_error("bgp:\n  port: 179\n", "bgp:", "node", "required key missing")
    text = MINIMAL + "bgp:\n  peers:\n    - address: 192.168.100.2\n"
    check_error(text, "- address", "bgp.peers[0].asn", "required key missing")
    check_error(MINIMAL + "pools:\n  - export: false\n", "- export", "pools[0].cidr", "required key missing")


# --------------------------------------------------------------------------------------- dual stack

DUAL = """\
node: {name: host0, address: 192.168.100.10, address6: "fd00:100::10", asn: 64512}
bgp:
  mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.3, "fd00:100::10", "fd00:100::3"]}
pools:
  - cidr: 10.20.0.0/16
  - cidr: fd00:10:20::/48
"""

NODE6 = MINIMAL + '  address6: "fd00:100::10"\n'


def test_dual_stack_example_parses_and_round_trips() -> None:
    cfg = c.parse(DUAL, "dual.yaml")
    assert cfg.node == NodeConfig(
        name="host0",
        address=A("192.168.100.10"),
        asn=64512,
        router_id=A("192.168.100.10"),
        address6=A6("fd00:100::10"),
    )
    assert cfg.bgp.mesh == MeshConfig(
        enabled=True,
        nodes=(A("192.168.100.10"), A("192.168.100.3"), A6("fd00:100::10"), A6("fd00:100::3")),
    )
    assert cfg.pools == (PoolConfig(IPv4Network("10.20.0.0/16")), PoolConfig(IPv6Network("fd00:10:20::/48")))
    # one session per family with host1; host1's addresses are the lower in both, so it connects
    assert cfg.sessions() == (
        PeerConfig(A("192.168.100.3"), 64512, passive=False),
        PeerConfig(A6("fd00:100::3"), 64512, passive=False),
    )
    assert [s.family for s in cfg.sessions()] == [4, 6]
    assert cfg.families == (4, 6)
    assert cfg.local_address(4) == A("192.168.100.10")
    assert cfg.local_address(6) == A6("fd00:100::10")
    text = c.dump(cfg)
    doc = yaml.safe_load(text)
    assert list(doc["node"]) == ["name", "address", "address6", "asn", "router_id"]
    assert doc["node"]["address6"] == "fd00:100::10"
    assert doc["bgp"]["mesh"]["nodes"] == ["192.168.100.10", "192.168.100.3", "fd00:100::10", "fd00:100::3"]
    assert doc["pools"] == [
        {"cidr": "10.20.0.0/16", "export": True, "ipip": "never", "vxlan": "never"},
        {"cidr": "fd00:10:20::/48", "export": True, "ipip": "never", "vxlan": "never"},
    ]
    again = c.parse(text, "dumped.yaml")
    assert again == cfg
    assert c.dump(again) == text


def test_ipv4_only_config_has_no_address6_and_family_4() -> None:
    cfg = c.parse(MINIMAL + "bgp:\n  peers:\n    - {address: 192.168.100.2, asn: 1}\n")
    assert cfg.node.address6 is None
    assert cfg.families == (4,)
    assert cfg.local_address(4) == A("192.168.100.10")
    assert cfg.local_address(6) is None
    assert cfg.sessions()[0].family == 4
    assert "address6" not in yaml.safe_load(c.dump(cfg))["node"]
    with pytest.raises(ValueError):
        cfg.local_address(10)


def test_address6_null_means_unset() -> None:
    assert c.parse(MINIMAL + "  address6: null\n") == c.parse(MINIMAL)


@pytest.mark.parametrize(
    ("extra", "family6"),
    [
        ('  address6: "fd00:100::10"\n', True),  # address6 alone
        ("pools:\n  - cidr: fd00:10:20::/48\n", True),  # an IPv6 pool alone
        ("pools:\n  - cidr: 10.20.0.0/16\n", False),
        ("bgp:\n  mesh: {enabled: false, nodes: ['fd00:100::3']}\n", False),  # no session from it
    ],
)
def test_families(extra: str, family6: bool) -> None:
    assert c.parse(MINIMAL + extra).families == ((4, 6) if family6 else (4,))


def test_families_with_an_ipv6_session_only() -> None:
    # Config built directly (parse requires address6 for an IPv6 peer): a session alone brings family 6
    node = NodeConfig("h", A("192.168.100.10"), 64512, A("192.168.100.10"))
    cfg = Config(node=node, bgp=BgpConfig(peers=(PeerConfig(A6("fd00::2"), 1),)))
    assert cfg.families == (4, 6)
    # and a mesh without address6 gives no IPv6 session
    mesh = MeshConfig(enabled=True, nodes=(A("192.168.100.10"), A6("fd00::3")))
    assert Config(node=node, bgp=BgpConfig(mesh=mesh)).sessions() == ()


def test_sessions_ipv6_passive_rule() -> None:
    cfg = c.parse(
        NODE6
        + """\
bgp:
  port: 1790
  mesh:
    enabled: true
    nodes: [192.168.100.10, "fd00:100::10", "fd00:100::3", "fd00:100::12", 192.168.100.12]
  peers:
    - {address: "fd00:200::1", asn: 65000, passive: true}
    - {address: 192.168.200.1, asn: 65000}
"""
    )
    assert cfg.sessions() == (
        PeerConfig(A6("fd00:100::3"), 64512, port=1790, passive=False),
        PeerConfig(A6("fd00:100::12"), 64512, port=1790, passive=True),
        PeerConfig(A("192.168.100.12"), 64512, port=1790, passive=True),
        PeerConfig(A6("fd00:200::1"), 65000, passive=True),
        PeerConfig(A("192.168.200.1"), 65000),
    )
    assert [s.family for s in cfg.sessions()] == [6, 6, 4, 6, 4]
    # the address6 comparison decides, not the IPv4 one: host0 is the higher IPv4 of 10/3 but the lower IPv6
    other = c.parse(
        MINIMAL.replace("192.168.100.10", "192.168.100.30")
        + '  address6: "fd00:100::1"\n'
        + "bgp:\n  mesh:\n    enabled: true\n"
        + "    nodes: [192.168.100.30, 192.168.100.3, 'fd00:100::1', 'fd00:100::3']\n"
    )
    assert [(str(s.address), s.passive) for s in other.sessions()] == [
        ("192.168.100.3", False),
        ("fd00:100::3", True),
    ]


def test_mesh_ipv6_node_forms_normalized() -> None:
    cfg = c.parse(NODE6 + "bgp:\n  mesh: {nodes: [192.168.100.10, 'FD00:0100:0::0010', 1:2:3:4:5:6:7:8]}\n")
    assert cfg.bgp.mesh.nodes == (A("192.168.100.10"), A6("fd00:100::10"), A6("1:2:3:4:5:6:7:8"))


def test_ipv4_mesh_with_address6_set_is_fine() -> None:
    cfg = c.parse(NODE6 + "bgp:\n  mesh: {enabled: true, nodes: [192.168.100.10, 192.168.100.3]}\n")
    assert cfg.sessions() == (PeerConfig(A("192.168.100.3"), 64512),)
    assert cfg.families == (4, 6)


def test_ipv6_mesh_disabled_needs_no_address6() -> None:
    cfg = c.parse(MINIMAL + "bgp:\n  mesh: {enabled: false, nodes: ['fd00:100::3']}\n")
    assert cfg.bgp.mesh.nodes == (A6("fd00:100::3"),)
    assert cfg.sessions() == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("192.168.1.1", "192.168.1.1 is an IPv4 address; address6 takes an IPv6 address"),
        ("x", "invalid IPv6 address 'x'"),
        ("'fd00::1::2'", "invalid IPv6 address 'fd00::1::2'"),
        ("''", "invalid IPv6 address ''"),
        ("'fe80::1'", "fe80::1 is a link-local address; address6 takes a global unicast address"),
        ("'ff02::1'", "ff02::1 is a multicast address; address6 takes a global unicast address"),
        ("'::'", ":: is the unspecified address; address6 takes a global unicast address"),
        ("'::1'", "::1 is the loopback address; address6 takes a global unicast address"),
        (
            "'::ffff:c0a8:101'",
            # Python 3.13 prints an IPv4-mapped address dotted, 3.11 in hex
            f"{A6('::ffff:c0a8:101')} is an IPv4-mapped address; address6 takes a global unicast address",
        ),
        ("'fd00::1%eth0'", "invalid IPv6 address 'fd00::1%eth0' (a zone id is not allowed)"),
        ("64512", "expected a string, got integer"),
        ("[fd00::1]", "expected a string, got list"),
    ],
)
def test_error_address6(value: str, message: str) -> None:
    check_exact(MINIMAL + f"  address6: {value}\n", "address6", f"node.address6: {message}")


@pytest.mark.parametrize("value", ["fd00:100::10", "2001:db8::1", "'2001:DB8:0:0:0:0:0:1'"])
def test_address6_accepted(value: str) -> None:
    assert c.parse(MINIMAL + f"  address6: {value}\n").node.address6 == A6(value.strip("'"))


def test_error_ipv6_in_ipv4_only_keys() -> None:
    check_exact(
        MINIMAL.replace("192.168.100.10", "'fd00::10'"),
        "address:",
        "node.address: fd00::10 is an IPv6 address; address takes an IPv4 address"
        " (an IPv6 one goes in node.address6)",
    )
    check_exact(
        MINIMAL + "  router_id: 'fd00::1'\n",
        "router_id",
        "node.router_id: fd00::1 is an IPv6 address; router_id takes an IPv4 address",
    )
    # not an IPv6 address either: the IPv4 message as before
    check_exact(
        MINIMAL + "  router_id: 'a:b:x'\n", "router_id", "node.router_id: invalid IPv4 address 'a:b:x'"
    )


def test_error_mesh_ipv6_without_address6() -> None:
    text = MINIMAL + "bgp:\n  mesh:\n    enabled: true\n    nodes: [192.168.100.10, 'fd00:100::10']\n"
    check_exact(text, "nodes:", "bgp.mesh.nodes: mesh lists IPv6 nodes but node.address6 is not set")


def test_error_mesh_ipv6_missing_own_address6() -> None:
    text = NODE6 + "bgp:\n  mesh:\n    enabled: true\n    nodes: [192.168.100.10, 'fd00:100::3']\n"
    check_exact(
        text, "nodes:", "bgp.mesh.nodes: mesh is enabled but does not list this node's address6 fd00:100::10"
    )


def test_error_mesh_own_ipv4_checked_first() -> None:
    text = NODE6 + "bgp:\n  mesh:\n    enabled: true\n    nodes: ['fd00:100::10', 192.168.100.3]\n"
    check_exact(
        text, "nodes:", "bgp.mesh.nodes: mesh is enabled but does not list this node's address 192.168.100.10"
    )


def test_error_duplicate_ipv6_mesh_node() -> None:
    text = NODE6 + "bgp:\n  mesh:\n    nodes:\n      - 'fd00:100::3'\n      - 'FD00:100:0::3'\n"
    check_exact(text, "FD00", "bgp.mesh.nodes[1]: duplicate mesh node fd00:100::3")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("'fd00::zz'", "invalid IPv6 address 'fd00::zz'"),
        ("'ff02::2'", "ff02::2 is not a unicast address"),
        ("'::'", ":: is not a unicast address"),
        ("'fe80::2'", "fe80::2 is a link-local address; sessions need a global one"),
        (
            "'::ffff:c0a8:6402'",
            f"{A6('::ffff:c0a8:6402')} is an IPv4-mapped address; write 192.168.100.2 instead",
        ),
        ("'fd00::2%eth0'", "invalid IPv6 address 'fd00::2%eth0' (a zone id is not allowed)"),
    ],
)
def test_error_bad_ipv6_mesh_node_and_peer(value: str, message: str) -> None:
    check_exact(
        NODE6 + f"bgp:\n  mesh:\n    nodes:\n      - {value}\n", f"- {value}", f"bgp.mesh.nodes[0]: {message}"
    )
    check_exact(
        NODE6 + f"bgp:\n  peers:\n    - asn: 1\n      address: {value}\n",
        f"address: {value}",
        f"bgp.peers[0].address: {message}",
    )


def test_error_ipv6_peer_without_address6() -> None:
    text = MINIMAL + "bgp:\n  peers:\n    - address: 192.168.100.2\n      asn: 1\n    - address: 'fd00::2'\n"
    check_exact(
        text + "      asn: 1\n",
        "fd00::2",
        "bgp.peers[1].address: peer fd00::2 is an IPv6 address but node.address6 is not set",
    )


def test_error_ipv6_peer_is_own_address6() -> None:
    text = NODE6 + "bgp:\n  peers:\n    - address: 'fd00:100:0::10'\n      asn: 1\n"
    check_exact(text, "- address", "bgp.peers[0].address: peer fd00:100::10 is this node's own address")


def test_error_duplicate_ipv6_peer() -> None:
    text = NODE6 + textwrap.dedent(
        """\
        bgp:
          peers:
            - address: 'fd00::2'
              asn: 1
            - address: 'fd00:0::2'
              asn: 2
        """
    )
    check_exact(text, "fd00:0::2", "bgp.peers[1].address: duplicate peer fd00::2")


def test_error_ipv6_peer_is_mesh_node() -> None:
    text = NODE6 + textwrap.dedent(
        """\
        bgp:
          mesh:
            enabled: true
            nodes: [192.168.100.10, 'fd00:100::10', 'fd00:100::11']
          peers:
            - address: 'fd00:100::11'
              asn: 1
        """
    )
    check_exact(
        text, "- address", "bgp.peers[0].address: peer fd00:100::11 is also a mesh node (bgp.mesh.nodes)"
    )
    assert len(c.parse(text.replace("enabled: true", "enabled: false")).sessions()) == 1


def test_ipv6_pools() -> None:
    cfg = c.parse(
        MINIMAL
        + "pools:\n  - cidr: fd00:10:20::/48\n  - cidr: 10.20.0.0/16\n"
        + "  - {cidr: 'FD00:10:21::/64', export: false}\n"
    )
    assert cfg.pools == (
        PoolConfig(IPv6Network("fd00:10:20::/48")),
        PoolConfig(IPv4Network("10.20.0.0/16")),
        PoolConfig(IPv6Network("fd00:10:21::/64"), False),
    )
    # families do not overlap each other, even where their integers do (::a14:0/112 and 10.20.0.0/16)
    assert len(c.parse(MINIMAL + "pools:\n  - cidr: 10.20.0.0/16\n  - cidr: '::a14:0/112'\n").pools) == 2
    # /0 is accepted in both families, as IPv4 always accepted it
    assert len(c.parse(MINIMAL + "pools:\n  - cidr: 0.0.0.0/0\n  - cidr: ::/0\n").pools) == 2


def test_error_overlapping_ipv6_pools() -> None:
    text = (
        MINIMAL + "pools:\n  - cidr: fd00:10:20::/48\n  - cidr: 10.20.0.0/16\n  - cidr: fd00:10:20:5::/64\n"
    )
    check_exact(text, "fd00:10:20:5::", "pools[2].cidr: pool overlaps pools[0] fd00:10:20::/48")
    text = MINIMAL + "pools:\n  - cidr: fd00:10:20::/64\n  - cidr: fd00:10::/32\n"
    check_exact(text, "fd00:10::/32", "pools[1].cidr: pool overlaps pools[0] fd00:10:20::/64")
    text = MINIMAL + "pools:\n  - cidr: fd00:10:20::/48\n  - cidr: 'FD00:10:20:0::/48'\n"
    check_exact(text, "FD00", "pools[1].cidr: duplicate pool pools[0] fd00:10:20::/48")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("fd00:10:20::1/48", "fd00:10:20::1/48 has host bits set"),
        ("fd00:10:20::/129", "invalid CIDR 'fd00:10:20::/129'"),
        ("'fd00:10:20::'", "invalid CIDR 'fd00:10:20::' (missing /prefix length)"),
        ("fd00:zz::/48", "invalid CIDR 'fd00:zz::/48'"),
        ("'fe80::%eth0/64'", "invalid CIDR 'fe80::%eth0/64' (a zone id is not allowed)"),
    ],
)
def test_error_invalid_ipv6_cidr(value: str, message: str) -> None:
    check_exact(MINIMAL + f"pools:\n  - cidr: {value}\n", "cidr", f"pools[0].cidr: {message}")


def test_peer_family_property() -> None:
    assert PeerConfig(A("10.0.0.1"), 1).family == 4
    assert PeerConfig(A6("fd00::1"), 1).family == 6


# ---------------------------------------------------------------------------------- shipped examples


def example_files() -> list[Path]:
    found = {CONFIGS / name for name in KNOWN_EXAMPLES}
    found.update(CONFIGS.glob("host*.yaml"))
    found.update(CONFIGS.glob("reflector*.yaml"))
    return sorted(found)


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_shipped_examples_parse(path: Path) -> None:
    cfg = c.load(path)
    assert c.parse(c.dump(cfg), str(path)) == cfg


def test_host_example_every_key_present() -> None:
    text = (CONFIGS / "host.yaml").read_text()
    dumped = yaml.safe_load(c.dump(c.load(CONFIGS / "host.yaml")))
    raw = yaml.safe_load(text)

    def keys(d: object, prefix: str = "") -> set[str]:
        out: set[str] = set()
        if isinstance(d, dict):
            for k, v in d.items():
                out.add(prefix + k)
                out |= keys(v, prefix + k + ".")
        elif isinstance(d, list) and d:
            out |= keys(d[0], prefix + "[].")
        return out

    assert keys(raw) == keys(dumped)


def test_two_host_example() -> None:
    h0 = c.load(CONFIGS / "host0.yaml")
    h1 = c.load(CONFIGS / "host1.yaml")
    assert h0.sessions() == (PeerConfig(A("192.168.100.3"), 64512, passive=False),)
    assert h1.sessions() == (PeerConfig(A("192.168.100.10"), 64512, passive=True),)
    assert h0.pools == h1.pools == (PoolConfig(IPv4Network("10.20.0.0/16")),)
    assert (h0.runtime.dir, h1.runtime.dir) == ("/run/bgpd/host0", "/run/bgpd/host1")


# ------------------------------------------------------------------------------------------ round trip

_text = st.text(
    alphabet=st.characters(
        codec="utf-8", categories=("L", "N", "P", "S", "Zs"), exclude_characters=c.UNQUOTABLE
    ),
    min_size=0,
    max_size=20,
)
_name = st.from_regex(r"[a-z][a-z0-9.-]{0,15}", fullmatch=True)
_hold = st.one_of(st.just(0), st.integers(3, 65535))
_asn = st.integers(1, 2**32 - 1)


@st.composite
def configs(draw: st.DrawFn) -> Config:
    addrs = draw(st.lists(st.integers(1, 2**24 - 2), min_size=1, max_size=8, unique=True))
    ips = [IPv4Address((10 << 24) + a) for a in addrs]
    own, rest = ips[0], ips[1:]
    split = draw(st.integers(0, len(rest)))
    mesh_others, peer_addrs = rest[:split], rest[split:]
    enabled = draw(st.booleans())
    mesh_nodes: list[IPv4Address | IPv6Address] = list(mesh_others)
    if enabled or draw(st.booleans()):
        mesh_nodes.insert(draw(st.integers(0, len(mesh_nodes))), own)
    peers = tuple(
        PeerConfig(
            address=a,
            asn=draw(_asn),
            port=draw(st.integers(1, 65535)),
            passive=draw(st.booleans()),
            hold_time=draw(st.none() | _hold),
            password=draw(st.none() | _text.filter(lambda s: bool(s.strip()) and len(s.encode()) <= 80)),
            description=draw(_text),
        )
        for a in peer_addrs
    )
    # dual stack: address6, IPv6 mesh nodes (own address6 among them when enabled) and IPv6 peers
    own6 = None
    if draw(st.booleans()):
        addrs6 = draw(st.lists(st.integers(1, 2**64), min_size=1, max_size=6, unique=True))
        ips6 = [IPv6Address((0xFD00 << 112) + a) for a in addrs6]
        own6, rest6 = ips6[0], ips6[1:]
        split6 = draw(st.integers(0, len(rest6)))
        mesh6 = [own6, *rest6[:split6]] if split6 or enabled or draw(st.booleans()) else []
        for a6 in mesh6:
            mesh_nodes.insert(draw(st.integers(0, len(mesh_nodes))), a6)
        peers += tuple(
            PeerConfig(address=a6, asn=draw(_asn), passive=draw(st.booleans())) for a6 in rest6[split6:]
        )
    octets = draw(st.lists(st.integers(0, 255), max_size=4, unique=True))
    pools = tuple(PoolConfig(IPv4Network(f"172.{o}.0.0/16"), draw(st.booleans())) for o in octets)
    hextets = draw(st.lists(st.integers(0, 0xFFFF), max_size=3, unique=True))
    pools += tuple(PoolConfig(IPv6Network(f"fd00:{h:x}::/32"), draw(st.booleans())) for h in hextets)
    return Config(
        node=NodeConfig(
            name=draw(_name),
            address=own,
            asn=draw(_asn),
            router_id=draw(st.sampled_from([own, IPv4Address("1.1.1.1")])),
            address6=own6,
        ),
        bgp=BgpConfig(
            port=draw(st.integers(1, 65535)),
            hold_time=draw(_hold),
            graceful_restart=draw(st.integers(0, 4095)),
            select_defer_time=draw(st.floats(0, 3600, allow_nan=False, allow_infinity=False)),
            mesh=MeshConfig(enabled=enabled, nodes=tuple(mesh_nodes)),
            peers=peers,
        ),
        pools=pools,
        export=ExportConfig(
            protocols=tuple(draw(st.lists(st.integers(0, 255), max_size=4))),
            interfaces=tuple(draw(st.lists(_text.filter(lambda s: bool(s.strip())), max_size=3))),
        ),
        kernel=KernelConfig(
            protocol=draw(st.integers(0, 255)),
            table=draw(st.integers(1, 2**32 - 1)),
            metric=draw(st.integers(0, 2**32 - 1)),
            install=draw(st.booleans()),
            stale_timeout=draw(st.floats(0, 86400, allow_nan=False, allow_infinity=False)),
            audit_interval=draw(st.floats(0, 86400, allow_nan=False, allow_infinity=False)),
        ),
        runtime=RuntimeConfig(
            dir=draw(_text.filter(lambda s: bool(s.strip()))),
            log_level=draw(st.sampled_from(c.LOG_LEVELS)),
        ),
        source="gen.yaml",
    )


@settings(max_examples=200, deadline=None)
@given(configs())
def test_dump_parse_round_trip(cfg: Config) -> None:
    text = c.dump(cfg)
    again = c.parse(text, "dumped.yaml")
    assert again == cfg
    assert c.dump(again) == text


def test_dump_is_complete_and_ordered() -> None:
    doc = yaml.safe_load(c.dump(c.parse(MINIMAL)))
    assert list(doc) == [
        "node",
        "bgp",
        "pools",
        "export",
        "kernel",
        "runtime",
        "metrics",
        "control",
        "health",
        "filters",
    ]
    assert doc["metrics"] == {"listen": None}
    assert doc["control"] == {"socket": None}
    assert doc["health"] == {"startup_window": 30.0}
    assert doc["node"]["router_id"] == "192.168.100.10"
    assert doc["kernel"] == {
        "protocol": 12,
        "table": 254,
        "metric": 32,
        "install": True,
        "stale_timeout": 120.0,
        "audit_interval": 300.0,
    }
    assert doc["bgp"]["select_defer_time"] == 120.0
    assert doc["bgp"]["mesh"] == {"enabled": False, "nodes": [], "password": None}


@pytest.mark.parametrize(
    ("key", "value"),
    [("password", "'pa\"ss'"), ("description", '"bob\'s router"'), ("description", "'back\\\\slash'")],
)
def test_strings_exabgp_cannot_carry_are_config_errors(key: str, value: str) -> None:
    text = (
        "node:\n  name: h\n  address: 192.168.1.1\n  asn: 64512\n"
        f"bgp:\n  peers:\n    - address: 192.168.1.2\n      asn: 64512\n      {key}: {value}\n"
    )
    with pytest.raises(c.ConfigError) as info:
        c.parse(text, "t.yaml")
    assert str(info.value).startswith(f"t.yaml:9: bgp.peers[0].{key}:")


# ------------------------------------------------------------------ IP-in-IP and VXLAN pools (issue 12)

POOLS = MINIMAL.replace("192.168.100.10", "192.168.100.10/24") + "pools:\n"


@pytest.mark.parametrize(
    ("written", "mode"),
    [
        ("never", "never"),
        ("always", "always"),
        ("cross-subnet", "cross-subnet"),
        ("Never", "never"),  # Calico's own spellings (IPPool ipipMode) move over one to one
        ("Always", "always"),
        ("CrossSubnet", "cross-subnet"),
    ],
)
def test_pool_ipip_and_vxlan_modes(written: str, mode: str) -> None:
    cfg = c.parse(
        POOLS + f"  - {{cidr: 10.20.0.0/16, ipip: {written}}}\n  - {{cidr: 10.30.0.0/16, vxlan: {written}}}\n"
    )
    assert [(p.ipip, p.vxlan) for p in cfg.pools] == [(mode, "never"), ("never", mode)]
    assert c.parse(c.dump(cfg)) == cfg


def test_pool_modes_default_never_and_node_address_with_its_length() -> None:
    cfg = c.parse(POOLS + "  - cidr: 10.20.0.0/16\n")
    assert (cfg.pools[0].ipip, cfg.pools[0].vxlan) == ("never", "never")
    assert cfg.node.address == A("192.168.100.10")  # the session source and next hop, without the length
    assert cfg.node.router_id == A("192.168.100.10")
    assert (cfg.node.prefix_length, cfg.node.subnet) == (24, IPv4Network("192.168.100.0/24"))
    assert yaml.safe_load(c.dump(cfg))["node"]["address"] == "192.168.100.10/24"
    bare = c.parse(MINIMAL)
    assert (bare.node.prefix_length, bare.node.subnet) == (None, None)
    assert yaml.safe_load(c.dump(bare))["node"]["address"] == "192.168.100.10"
    six = c.parse(MINIMAL + "  address6: fd00:100::10/64\n")
    assert (six.node.address6, six.node.prefix_length6) == (A6("fd00:100::10"), 64)
    assert c.parse(c.dump(six)) == six


def test_error_pool_modes() -> None:
    check_exact(
        POOLS + "  - {cidr: 10.20.0.0/16, ipip: alway}\n",
        "ipip: alway",
        "pools[0].ipip: bad ipip mode 'alway': one of never, always, cross-subnet (did you mean 'always'?)",
    )
    check_error(
        POOLS + "  - {cidr: 10.20.0.0/16, vxlan: sometimes}\n", "vxlan", "pools[0].vxlan", "bad vxlan mode"
    )
    check_error(POOLS + "  - {cidr: 10.20.0.0/16, ipip: true}\n", "ipip", "pools[0].ipip")
    check_exact(
        POOLS + "  - cidr: 10.20.0.0/16\n  - cidr: fd00:10:20::/48\n    ipip: cross-subnet\n",
        "ipip: cross",
        "pools[1].ipip: ipip cross-subnet on IPv6 pool fd00:10:20::/48: Calico has no IP-in-IP for IPv6",
    )
    # an IPv6 pool may be Felix's VXLAN pool; never is fine everywhere
    c.parse(POOLS + "  - {cidr: 'fd00:10:20::/48', vxlan: always, ipip: never}\n")
    check_exact(
        POOLS + "  - cidr: 10.20.0.0/16\n    ipip: always\n    vxlan: cross-subnet\n",
        "vxlan: cross",
        "pools[0].vxlan: pool 10.20.0.0/16 has both ipip always and vxlan cross-subnet: at most one may be "
        "enabled",
    )


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("192.168.100.10/33", "invalid prefix length '33' in '192.168.100.10/33': 1..32"),
        ("192.168.100.10/0", "invalid prefix length '0'"),
        ("192.168.100.10/", "invalid prefix length ''"),
        ("192.168.100.10/255.255.255.0", "invalid prefix length '255.255.255.0'"),
        ("192.168.100.300/24", "invalid IPv4 address '192.168.100.300'"),
        ("fd00::1/64", "fd00::1 is an IPv6 address; address takes an IPv4 address"),
        ("192.168.100.0/24", "192.168.100.0 is the network address of 192.168.100.0/24, not a host address"),
        ("192.168.100.255/24", "192.168.100.255 is the broadcast address of 192.168.100.0/24"),
    ],
)
def test_error_node_address_with_length(address: str, message: str) -> None:
    check_error(MINIMAL.replace("192.168.100.10", f"'{address}'"), "address", "node.address", message)


def test_error_node_address6_with_length() -> None:
    check_error(MINIMAL + "  address6: 'fd00::1/129'\n", "address6", "node.address6", "1..128")
    check_error(MINIMAL + "  address6: 'fe80::1/64'\n", "address6", "node.address6", "link-local")


# ------------------------------------------------------------------ eBGP, communities, filters (issue 13)

PEER = MINIMAL + "bgp:\n  peers:\n    - address: 192.168.100.1\n      asn: 65001\n"


def test_ebgp_policy_keys_round_trip_with_calico_spellings() -> None:
    text = (
        PEER
        + "      local_asn: 64600\n      next_hop_mode: Self\n      allow_local_as: 1\n      filters: [tor]\n"
        + "  communities: [{name: rack-a, value: 64512:100}, {name: big, value: '64512:1:2'}]\n"
        + "  prefix_advertisements:\n    - {cidr: 10.20.0.0/16, communities: [rack-a, big, '65000:7']}\n"
        + "filters:\n  - name: tor\n"
        + "    export_v4:\n"
        + "      - {action: accept, match_operator: in, cidr: 10.20.0.0/16, prefix_length: {max: 26}}\n"
        + "    import_v4: [{action: Reject, match_operator: NotIn, cidr: 10.0.0.0/8}]\n"
        + "    import_v6: [{action: Accept, source: remotepeers, cidr: 'fd00::/8', match_operator: In}]\n"
    )
    cfg = c.parse(text)
    (peer,) = cfg.bgp.peers
    assert (peer.local_asn, peer.next_hop_mode, peer.allow_local_as, peer.filters) == (
        64600,
        "self",
        1,
        ("tor",),
    )
    assert cfg.bgp.communities == (("rack-a", "64512:100"), ("big", "64512:1:2"))
    (adv,) = cfg.bgp.prefix_advertisements
    assert adv.communities == ("64512:100", "64512:1:2", "65000:7")  # names resolved, literals kept
    (f,) = cfg.filters
    assert f.export_v4[0].action == "Accept" and f.export_v4[0].match_operator == "In"  # Calico's casing
    assert f.export_v4[0].prefix_length_max == 26
    assert f.import_v6[0].source == "RemotePeers"
    assert c.parse(c.dump(cfg)) == cfg


def test_keepalive_time_is_accepted_below_the_hold_time() -> None:
    """Calico's keepaliveTime: seconds, 1..21845, below the session's hold time (its own or bgp.hold_time);
    null is the default (hold time / 3)."""
    cfg = c.parse(PEER + "      keepalive_time: 30\n")
    (peer,) = cfg.bgp.peers
    assert (peer.keepalive_time, peer.hold_time, cfg.bgp.hold_time) == (30, None, 90)
    assert c.parse(c.dump(cfg)) == cfg
    assert c.parse(PEER + "      keepalive_time: null\n").bgp.peers[0].keepalive_time is None
    assert c.parse(PEER).bgp.peers[0].keepalive_time is None
    assert c.parse(PEER + "      keepalive_time: 89\n").bgp.peers[0].keepalive_time == 89
    (short,) = c.parse(PEER + "      hold_time: 9\n      keepalive_time: 1\n").bgp.peers
    assert (short.hold_time, short.keepalive_time) == (9, 1)
    big = PEER.replace("bgp:\n", "bgp:\n  hold_time: 65535\n") + "      keepalive_time: 21845\n"
    assert c.parse(big).bgp.peers[0].keepalive_time == 21845
    (mesh_and_peer,) = c.parse(PEER + "      keepalive_time: 3\n").sessions()
    assert mesh_and_peer.keepalive_time == 3  # what speaker.sessions_of hands to ExaBGP


@pytest.mark.parametrize(
    ("peer", "message"),
    [
        ("      keepalive_time: 0\n", "1..21845"),
        ("      keepalive_time: 21846\n", "1..21845"),
        ("      keepalive_time: ten\n", "expected an integer"),
        ("      keepalive_time: 90\n", "keepalive time 90 must be below the hold time 90"),
        ("      hold_time: 9\n      keepalive_time: 9\n", "must be below the hold time 9"),
        ("      hold_time: 0\n      keepalive_time: 1\n", "hold time 0"),
    ],
)
def test_error_keepalive_time(peer: str, message: str) -> None:
    check_error(PEER + peer, "keepalive_time", "bgp.peers[0].keepalive_time", message)


def test_error_keepalive_time_against_the_global_hold_time() -> None:
    text = PEER.replace("bgp:\n", "bgp:\n  hold_time: 0\n") + "      keepalive_time: 5\n"
    check_error(text, "keepalive_time", "bgp.peers[0].keepalive_time", "hold time 0")
    text = PEER.replace("bgp:\n", "bgp:\n  hold_time: 6\n") + "      keepalive_time: 6\n"
    check_error(text, "keepalive_time", "bgp.peers[0].keepalive_time", "below the hold time 6")
    # a peer's own hold time is the one that counts
    text = (
        PEER.replace("bgp:\n", "bgp:\n  hold_time: 6\n") + "      hold_time: 30\n      keepalive_time: 10\n"
    )
    assert c.parse(text).bgp.peers[0].keepalive_time == 10


def test_error_policy_keys() -> None:
    check_error(
        PEER + "      filters: [tr]\n", "filters: [tr]", "bgp.peers[0].filters[0]", "unknown filter 'tr'"
    )
    check_error(
        PEER + "      next_hop_mode: sometimes\n", "next_hop_mode", "bgp.peers[0].next_hop_mode", "auto"
    )
    check_error(PEER + "      allow_local_as: 256\n", "allow_local_as", "bgp.peers[0].allow_local_as")
    check_error(
        PEER + "      keepalive_time: 100\n", "keepalive_time", "bgp.peers[0].keepalive_time", "below"
    )
    check_error(
        PEER + "  communities: [{name: a, value: '1:65536'}]\n",
        "communities",
        "bgp.communities[0].value",
        "invalid community '1:65536'",
    )
    check_error(
        PEER + "  communities: [{name: a, value: '1:2'}, {name: a, value: '1:3'}]\n",
        "communities",
        "bgp.communities[1].name",
        "duplicate community name",
    )
    check_error(
        PEER + "  prefix_advertisements: [{cidr: 10.20.0.0/16, communities: [rack-b]}]\n",
        "prefix_advertisements",
        "bgp.prefix_advertisements[0].communities[0]",
        "unknown community 'rack-b'",
    )
    check_error(
        MINIMAL + "filters:\n  - {name: f}\n  - {name: f}\n", "- {name: f}", "filters[1].name", "duplicate", 2
    )
    check_error(
        MINIMAL
        + "filters:\n  - name: f\n    import_v4: [{action: Accept, match_operator: In, cidr: 'fd00::/8'}]\n",
        "import_v4",
        "filters[0].import_v4[0].cidr",
        "goes in the v6 list of the same direction",
    )
    check_error(
        MINIMAL + "filters:\n  - name: f\n    export_v4: [{action: Accept, cidr: 10.0.0.0/8}]\n",
        "export_v4",
        "filters[0].export_v4[0].cidr",
        "cidr needs a match_operator",
    )
    check_error(
        MINIMAL + "filters:\n  - name: f\n    export_v4: [{action: Allow}]\n",
        "export_v4",
        "filters[0].export_v4[0].action",
        "bad action 'Allow': one of Accept, Reject",
    )
