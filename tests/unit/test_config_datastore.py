"""The ``datastore`` config section and a file whose cluster part comes from the datastore
(`bgpd.config_datastore`, `bgpd.config.parse_file`): every mistake a user can make is one ConfigError
naming the file, the line and the key; a good file gives its `ClusterFile`; `bgpd check` on both."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bgpd import cli
from bgpd import config as c
from bgpd.config import ClusterFile, Config, ConfigError, ControlConfig, MetricsConfig, RuntimeConfig
from bgpd.config_datastore import DatastoreSection
from bgpd.datastore.etcd import DEFAULT_PREFIX, DatastoreConfig

ETCD = """\
node: {name: host0}
datastore:
  type: etcdv3
  endpoints: ["http://10.0.0.1:2379"]
"""


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle`."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert hits, f"{needle!r} not in the text"
    return hits[0]


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        c.parse_file(text, "t.yaml")
    return info.value


def check_error(text: str, needle: str, keypath: str, message: str) -> ConfigError:
    """``text`` (dedented) is refused with one line ``t.yaml:LINE: keypath: ...message...``, LINE that of
    the first line holding ``needle``."""
    text = textwrap.dedent(text)
    err = error(text)
    line = line_of(text, needle)
    assert (err.file, err.line, err.keypath) == ("t.yaml", line, keypath), str(err)
    assert message in err.message, str(err)
    assert str(err).startswith(f"t.yaml:{line}: {keypath}: ")
    assert "\n" not in str(err)
    return err


def cluster(text: str) -> ClusterFile:
    got = c.parse_file(text, "t.yaml")
    assert isinstance(got, ClusterFile)
    return got


def with_datastore(section: str) -> str:
    """A file with this node's name and the given ``datastore:`` body (indented two spaces)."""
    return "node: {name: host0}\ndatastore:\n" + textwrap.indent(textwrap.dedent(section), "  ")


# ---------------------------------------------------------------------------- the datastore section


@pytest.mark.parametrize(
    ("section", "needle", "keypath", "message"),
    [
        (
            "type: consul\n",
            "consul",
            "datastore.type",
            "unknown datastore type 'consul': one of none, etcdv3",
        ),
        ("type: [etcdv3]\n", "type:", "datastore.type", "expected a string"),
        ("type: etcdv3\n", "datastore:", "datastore", "needs endpoints"),
        ("type: etcdv3\nendpoints: []\n", "endpoints", "datastore.endpoints", "at least one endpoint"),
        (
            "type: etcdv3\nendpoints: http://10.0.0.1:2379\n",
            "endpoints",
            "datastore.endpoints",
            "expected a list",
        ),
        (
            "type: etcdv3\nendpoints:\n  - http://10.0.0.1:2379\n  - 10.0.0.2:2379\n",
            "10.0.0.2:2379",
            "datastore.endpoints[1]",
            "'10.0.0.2:2379' is not http://HOST:PORT or https://HOST:PORT",
        ),
        (
            "type: etcdv3\nendpoints: ['unix:///run/etcd.sock']\n",
            "unix://",
            "datastore.endpoints[0]",
            "is not http://HOST:PORT",
        ),
        (
            "type: etcdv3\nendpoints: ['http://10.0.0.1:port']\n",
            "port'",
            "datastore.endpoints[0]",
            "has a bad port",
        ),
        (
            "type: etcdv3\nendpoints: ['http://[fd00::1]:2379']\n",
            "fd00::1",
            "datastore.endpoints[0]",
            "IPv6 endpoints are not supported",
        ),
        ("type: etcdv3\nendpoints: [2379]\n", "2379", "datastore.endpoints[0]", "expected a string"),
        (
            "type: etcdv3\nendpoints: ['http://a:2379', 'https://b:2379']\nca_file: /ca.pem\n",
            "endpoints",
            "datastore.endpoints",
            "mix of http:// and https:// endpoints",
        ),
        # a missing key is named at its section's line, as `required key missing` is
        (
            "type: etcdv3\nendpoints: ['https://10.0.0.1:2379']\n",
            "datastore:",
            "datastore.ca_file",
            "needed for https:// endpoints",
        ),
        (
            "type: etcdv3\nendpoints: ['http://10.0.0.1:2379']\nprefix: calico/resources/\n",
            "prefix:",
            "datastore.prefix",
            "'calico/resources/' does not start with '/'",
        ),
        (
            "type: etcdv3\nendpoints: ['http://10.0.0.1:2379']\nendpoint: x\n",
            "endpoint:",
            "datastore",
            "unknown key 'endpoint' (did you mean 'endpoints'?)",
        ),
        (
            "type: etcdv3\nendpoints: ['http://10.0.0.1:2379']\nsecrets_dir: 7\n",
            "secrets_dir",
            "datastore.secrets_dir",
            "expected a string",
        ),
        # type none (also the default): the file is the whole config and etcd's settings are a mistake
        (
            "type: none\nendpoints: ['http://10.0.0.1:2379']\n",
            "endpoints",
            "datastore.endpoints",
            "only used with datastore.type etcdv3",
        ),
        ("prefix: /calico/\n", "prefix", "datastore.prefix", "only used with datastore.type etcdv3"),
        ("type: none\nsecrets_dir: /s\n", "secrets_dir", "datastore.secrets_dir", "only used with"),
    ],
)
def test_a_bad_datastore_section_is_one_error_at_its_line(
    section: str, needle: str, keypath: str, message: str
) -> None:
    text = with_datastore(section)
    check_error(text, needle, keypath, message)
    if "type: etcdv3" in text:  # the whole-config parser says the same
        with pytest.raises(ConfigError, match=r"^t\.yaml:"):
            c.parse(text, "t.yaml")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "type: etcdv3\nendpoints: ['https://10.0.0.1:2379']\nca_file: /ca.pem\ncert_file: /c.pem\n",
            "cert_file and key_file go together",
        ),
        (
            "type: etcdv3\nendpoints: ['https://10.0.0.1:2379']\nca_file: /ca.pem\nkey_file: /k.pem\n",
            "cert_file and key_file go together",
        ),
        ("type: etcdv3\nendpoints: ['http://10.0.0.1:2379']\nusername: bgpd\n", "username and password"),
        ("type: etcdv3\nendpoints: ['http://10.0.0.1:2379']\npassword: s3cret\n", "username and password"),
        ("type: etcdv3\nendpoints: ['http://10.0.0.1:2379']\nca_file: /ca.pem\n", "need https:// endpoints"),
    ],
)
def test_a_setting_missing_its_partner_is_one_error_in_the_section(section: str, message: str) -> None:
    text = with_datastore(section)
    err = error(text)
    assert err.file == "t.yaml" and err.keypath.startswith("datastore")
    assert line_of(text, "datastore:") <= err.line <= len(text.splitlines())
    assert message in err.message
    assert "\n" not in str(err)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        (
            "type: etcdv3\nendpoints: ['https://10.0.0.1:2379']\nca_file: /ca.pem\ncert_file: /c.pem\n",
            "cert_file",
        ),
        ("type: etcdv3\nendpoints: ['http://10.0.0.1:2379']\nusername: bgpd\n", "username"),
        ("type: etcdv3\nendpoints: ['http://10.0.0.1:2379']\nca_file: /ca.pem\n", "ca_file"),
    ],
)
def test_a_setting_missing_its_partner_is_named_at_its_own_line(section: str, key: str) -> None:
    text = with_datastore(section)
    err = error(text)
    assert (err.line, err.keypath) == (line_of(text, f"{key}:"), f"datastore.{key}"), str(err)


# ----------------------------------------------------------------- the rest of a datastore-mode file


FROM_DATASTORE = "comes from the datastore (datastore.type is etcdv3)"


@pytest.mark.parametrize(
    ("node", "key", "field"),
    [
        ("address: 192.168.100.10/24", "address", "spec.bgp.ipv4Address"),
        ("address6: 'fd00::10/64'", "address6", "spec.bgp.ipv6Address"),
        ("asn: 64512", "asn", "spec.bgp.asNumber"),
        ("router_id: 192.168.100.10", "router_id", "the IPv4 address"),
    ],
)
def test_node_identity_in_datastore_mode_is_an_error_naming_the_node_record_field(
    node: str, key: str, field: str
) -> None:
    text = ETCD.replace("node: {name: host0}", f"node:\n  name: host0\n  {node}")
    err = check_error(text, node.split(":")[0] + ":", f"node.{key}", FROM_DATASTORE)
    assert field in err.message


@pytest.mark.parametrize(
    ("extra", "needle", "keypath"),
    [
        ("pools:\n  - cidr: 10.244.0.0/16\n", "pools:", "pools"),
        ("pools: []\n", "pools:", "pools"),
        ("filters:\n  - name: f\n", "filters:", "filters"),
        ("reflector:\n  cluster_id: 1.1.1.1\n", "reflector:", "reflector"),
        ("bgp:\n  hold_time: 30\n  peers:\n    - address: 10.0.0.9\n", "peers:", "bgp.peers"),
        ("bgp:\n  mesh: {enabled: true}\n", "mesh:", "bgp.mesh"),
        ("bgp:\n  port: 1790\n", "port:", "bgp.port"),
    ],
)
def test_cluster_settings_in_datastore_mode_are_an_error_at_their_line(
    extra: str, needle: str, keypath: str
) -> None:
    err = check_error(ETCD + extra, needle, keypath, FROM_DATASTORE)
    if keypath.startswith("bgp."):
        assert "local in bgp: hold_time, graceful_restart, select_defer_time" in err.message


@pytest.mark.parametrize(
    ("text", "needle", "keypath", "message"),
    [
        (ETCD.replace("{name: host0}", "{}"), "node:", "node.name", "required key missing"),
        (
            ETCD.replace("{name: host0}", "{name: 'host 0'}"),
            "node:",
            "node.name",
            "must not contain whitespace",
        ),
        (ETCD.replace("{name: host0}", ""), "node:", "node", ""),
        (ETCD + "pool: []\n", "pool:", "", "unknown key 'pool' (did you mean 'pools'?)"),
    ],
)
def test_node_name_and_unknown_keys_in_datastore_mode(
    text: str, needle: str, keypath: str, message: str
) -> None:
    err = error(text)
    assert (err.line, err.keypath) == (line_of(text, needle), keypath), str(err)
    assert message in err.message


@pytest.mark.parametrize(
    ("extra", "needle", "keypath", "message"),
    [
        ("kernel:\n  table: nosuch\n", "table:", "kernel.table", "unknown routing table name 'nosuch'"),
        ("kernel:\n  metric: x\n", "metric:", "kernel.metric", ""),
        ("bgp:\n  hold_time: 2\n", "hold_time", "bgp.hold_time", "must be 0 or 3..65535 (RFC 4271 4.2)"),
        (
            "bgp:\n  graceful_restart: maybe\n",
            "graceful_restart",
            "bgp.graceful_restart",
            "expected an integer",
        ),
        ("bgp:\n  select_defer_time: -3\n", "select_defer", "bgp.select_defer_time", "out of range"),
        ("export:\n  nosuch: 1\n", "nosuch", "export", "unknown key 'nosuch'"),
        ("runtime:\n  log_level: loud\n", "log_level", "runtime.log_level", "bad log level 'loud'"),
        ("metrics:\n  listen: nope\n", "listen", "metrics.listen", "invalid listen address 'nope'"),
        ("control:\n  sockt: /x\n", "sockt", "control", "unknown key 'sockt'"),
        ("health:\n  startup_window: -1\n", "startup_window", "health.startup_window", "out of range"),
    ],
)
def test_local_sections_are_validated_in_datastore_mode(
    extra: str, needle: str, keypath: str, message: str
) -> None:
    check_error(ETCD + extra, needle, keypath, message)


# ------------------------------------------------------------------------------------------ good files


FULL = """\
node: {name: host0}
datastore:
  type: etcdv3
  endpoints: ["https://10.0.0.1:2379", "https://etcd.example"]
  ca_file: /etc/bgpd/etcd-ca.pem
  cert_file: /etc/bgpd/etcd.pem
  key_file: /etc/bgpd/etcd-key.pem
  username: bgpd
  password: s3cret
  prefix: /registry/calico/
  secrets_dir: /etc/bgpd/secrets
bgp:
  hold_time: 30
  graceful_restart: 60
kernel: {table: 100, metric: 20}
export: {interfaces: ["cali+"]}
runtime: {dir: /run/bgpd-test, log_level: debug}
control: {socket: /run/bgpd-test/ctl.sock}
metrics: {listen: "127.0.0.1:9179"}
health: {startup_window: 10}
"""


def test_a_datastore_file_gives_its_cluster_file() -> None:
    got = c.parse_file(FULL, "host0.yaml")
    assert isinstance(got, ClusterFile)
    assert got.source == "host0.yaml"
    assert got.node_name == "host0"
    assert got.datastore == DatastoreSection(
        type="etcdv3",
        etcd=DatastoreConfig(
            endpoints=("https://10.0.0.1:2379", "https://etcd.example"),
            ca_file="/etc/bgpd/etcd-ca.pem",
            cert_file="/etc/bgpd/etcd.pem",
            key_file="/etc/bgpd/etcd-key.pem",
            username="bgpd",
            password="s3cret",
            prefix="/registry/calico/",
        ),
        secrets_dir="/etc/bgpd/secrets",
    )
    # the local sections as plain data, exactly as written (derive validates them again with the cluster's)
    assert got.local == {
        "bgp": {"hold_time": 30, "graceful_restart": 60},
        "kernel": {"table": 100, "metric": 20},
        "export": {"interfaces": ["cali+"]},
        "runtime": {"dir": "/run/bgpd-test", "log_level": "debug"},
        "control": {"socket": "/run/bgpd-test/ctl.sock"},
        "metrics": {"listen": "127.0.0.1:9179"},
        "health": {"startup_window": 10},
    }
    assert got.runtime == RuntimeConfig(dir="/run/bgpd-test", log_level="debug")
    assert got.control == ControlConfig(socket="/run/bgpd-test/ctl.sock")
    assert got.metrics.listen is not None and got.metrics != MetricsConfig()
    assert got.control_socket == "/run/bgpd-test/ctl.sock"
    assert got == c.parse_file(FULL, "other.yaml")  # the source is not compared


def test_a_minimal_datastore_file_takes_the_defaults() -> None:
    got = c.parse_file(ETCD.replace("type: etcdv3", "type: ETCDv3"), "t.yaml")
    assert isinstance(got, ClusterFile)
    assert got.datastore.etcd == DatastoreConfig(endpoints=("http://10.0.0.1:2379",), prefix=DEFAULT_PREFIX)
    assert got.datastore.secrets_dir is None
    assert got.local == {}
    assert (got.runtime, got.control, got.metrics) == (RuntimeConfig(), ControlConfig(), MetricsConfig())
    assert got.control_socket == "/run/bgpd/bgpd.ctl"  # runtime.dir's
    assert cluster(ETCD + "runtime: {dir: /tmp/x}\n").control_socket == "/tmp/x/bgpd.ctl"
    assert cluster(ETCD + "kernel:\nbgp:\n").local == {}  # empty sections are not passed on


def test_type_none_is_a_whole_config() -> None:
    text = "node: {name: h, address: 192.168.100.10, asn: 64512}\ndatastore: {type: none}\n"
    got = c.parse_file(text, "t.yaml")
    assert isinstance(got, Config)
    plain = c.parse("node: {name: h, address: 192.168.100.10, asn: 64512}\n", "t.yaml")
    assert got == plain
    assert c.parse(text, "t.yaml") == plain
    assert c.parse(text.replace("{type: none}", ""), "t.yaml") == plain  # an empty section is type none
    # type none: node.address is needed again, the file being the whole config
    with pytest.raises(ConfigError, match=r"node\.address: required key missing"):
        c.parse_file("node: {name: h}\ndatastore: {type: none}\n")


def test_parse_refuses_a_datastore_file_with_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        c.parse(ETCD, "t.yaml")
    err = info.value
    assert (err.file, err.keypath) == ("t.yaml", "datastore.type")
    assert "comes from the datastore" in err.message
    assert "\n" not in str(err)


def test_parse_refuses_a_datastore_file_at_the_line_of_its_type() -> None:
    with pytest.raises(ConfigError) as info:
        c.parse(ETCD, "t.yaml")
    assert info.value.line == line_of(ETCD, "type: etcdv3")


def test_load_file_reads_either_kind(tmp_path: Path) -> None:
    cluster, whole = tmp_path / "cluster.yaml", tmp_path / "whole.yaml"
    cluster.write_text(FULL)
    whole.write_text("node: {name: h, address: 192.168.100.10, asn: 64512}\n")
    got = c.load_file(cluster)
    assert isinstance(got, ClusterFile) and got.source == str(cluster)
    assert isinstance(c.load_file(whole), Config)
    with pytest.raises(ConfigError, match=r"datastore\.type"):
        c.load(cluster)
    with pytest.raises(ConfigError, match="cannot read config"):
        c.load_file(tmp_path / "nope.yaml")


def test_control_socket_of_a_datastore_file(tmp_path: Path) -> None:
    path = tmp_path / "host0.yaml"
    path.write_text(FULL)
    assert c.control_socket_of(path) == ("/run/bgpd-test/ctl.sock", None)
    path.write_text(ETCD + "runtime: {dir: /run/bgpd-x}\n")
    assert c.control_socket_of(path) == ("/run/bgpd-x/bgpd.ctl", None)
    # an error elsewhere still finds the daemon (which then refuses the reload)
    path.write_text(ETCD + "runtime: {dir: /run/bgpd-x}\npools: []\n")
    socket, err = c.control_socket_of(path)
    assert socket == "/run/bgpd-x/bgpd.ctl"
    assert err is not None and err.keypath == "pools"
    # an error in runtime itself is raised
    path.write_text(ETCD + "runtime: {dir: 7}\n")
    with pytest.raises(ConfigError, match=r"runtime\.dir"):
        c.control_socket_of(path)


# ------------------------------------------------------------------------------------------ bgpd check


def test_check_of_a_datastore_file_is_one_summary_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "host0.yaml"
    path.write_text(ETCD + "kernel: {table: 100}\nbgp: {hold_time: 30}\n")
    assert cli.main(["check", "-c", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.count("\n") == 1
    assert out.startswith("# node host0: the cluster part comes from the datastore ")
    assert f"(etcdv3 http://10.0.0.1:2379, prefix {DEFAULT_PREFIX})" in out
    assert "local sections: kernel, bgp." in out


def test_check_of_a_bad_datastore_file_is_one_line_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "host0.yaml"
    text = ETCD + "bgp:\n  peers: []\n"
    path.write_text(text)
    assert cli.main(["check", "-c", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    line = line_of(text, "peers:")
    assert err.startswith(f"bgpd: {path}:{line}: bgp.peers: {FROM_DATASTORE}")
    assert err.count("\n") == 1
