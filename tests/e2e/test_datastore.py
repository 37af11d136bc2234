"""Hosts configured only by the cluster's datastore (issue 15): a real etcd on the underlay, Calico's v3
records written to it as Calico writes them, and bgpd on each host with nothing but `node.name`, the
datastore section and its local sections.

- Node records added and deleted: every other host brings the mesh session up (down) and learns (drops)
  the node's routes, without a restart, and the sessions between the other hosts are never reset
  (their `since` and `flaps` unchanged).
- A changed IPPool: the routes are re-checked (a pool removed: its routes withdrawn and uninstalled).
- etcd stopped for 30 s: routes keep flowing on the sessions that exist, `bgpctl show status`,
  `bgpd_datastore_up` and the readiness probe say the datastore is down; a change made while bgpd could
  not see it is applied once etcd is back.
- Route-reflector topology from selectors: a Node with `routeReflectorClusterID` and a BGPPeer with
  `nodeSelector: all()` / `peerSelector: has(route-reflector)`, as Calico's documentation builds it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from bgpd.lab import netns
from bgpd.lab.etcd import EtcdServer, apply
from bgpd.lab.netns import wait_for
from tests.e2e.conftest import UNDERLAY, Host, Underlay
from tests.unit import calico_records

PREFIX = calico_records.P
ETCD_ADDRESS = f"{UNDERLAY}.2"
DEADLINE = 40.0


def record(
    plural: str, name: str, spec: dict[str, Any], labels: dict[str, str] | None = None
) -> dict[str, str]:
    """The etcd put of a Calico record (`tests.unit.calico_records`: the key and JSON Calico writes)."""
    key, value = calico_records.record(plural, name, spec, labels)
    return {"op": "put", "key": key, "value": value}


def node(host: Host, labels: dict[str, str] | None = None, **bgp: Any) -> dict[str, str]:
    return record("nodes", host.name, {"bgp": {"ipv4Address": f"{host.address}/24", **bgp}}, labels)


def pool(name: str, cidr: str) -> dict[str, str]:
    spec = {"cidr": cidr, "ipipMode": "Never", "vxlanMode": "Never", "natOutgoing": True}
    return record("ippools", name, spec)


def delete(plural: str, name: str) -> dict[str, str]:
    return {"op": "delete", "key": f"{PREFIX}{plural}/{name}"}


class Cluster:
    """etcd on the underlay (its own namespace on the switch) and the hosts that follow it."""

    def __init__(self, underlay: Underlay) -> None:
        self.underlay = underlay
        ns = underlay.fabric.namespace("etcd")
        underlay.fabric.veth(ns, "eth0", underlay.switch, "petcd")
        netns.ip("link", "set", "petcd", "master", "br0", ns=underlay.switch)
        netns.ip("addr", "add", f"{ETCD_ADDRESS}/24", "dev", "eth0", ns=ns)
        workdir = underlay.workdir / "etcd"
        workdir.mkdir()
        self.etcd = EtcdServer(underlay.fabric, ns, ETCD_ADDRESS, workdir)
        self.etcd.start()

    def write(self, *ops: dict[str, str]) -> int:
        answers = apply(self.etcd.ns, self.etcd.client_url, list(ops))
        return int(answers[-1]["revision"])

    def host(self, name: str, octet: int) -> Host:
        host = self.underlay.host(name, octet)
        secrets = host.workdir / "secrets"
        cfg = {
            "node": {"name": name},
            "datastore": {
                "type": "etcdv3",
                "endpoints": [self.etcd.client_url],
                "secrets_dir": str(secrets),
            },
            "bgp": {"hold_time": 9, "graceful_restart": 3, "select_defer_time": 10},
            "export": {"protocols": ["boot", 80], "interfaces": ["cali*"]},
            "kernel": {"protocol": "bird", "table": "main", "stale_timeout": 10},
            "runtime": {"dir": str(host.workdir / "run"), "log_level": "debug"},
            "metrics": {"listen": "127.0.0.1:9179"},
        }
        # not Host.write_config: it merges into a static config's keys, which a datastore file must not have
        (host.workdir / "bgpd.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        host.config = cfg
        return host


def sessions(host: Host) -> dict[str, dict[str, Any]]:
    """The host's sessions by address ({} while its bgpd has no control socket yet)."""
    result = host.ctl("show", "peers", "--json")
    if result.returncode != 0:
        assert "not running" in result.stderr or "is starting" in result.stderr, result.stderr
        return {}
    return {p["address"]: p for p in json.loads(result.stdout)}


def established(host: Host) -> set[str]:
    return {a for a, p in sessions(host).items() if p["state"] == "up"}


def status(host: Host) -> dict[str, Any]:
    result: dict[str, Any] = host.ctl_json("show", "status")
    return result


@pytest.fixture
def cluster(underlay: Underlay) -> Iterator[Cluster]:
    yield Cluster(underlay)


def test_hosts_follow_nodes_added_and_removed(cluster: Cluster) -> None:
    a, b, c = cluster.host("a", 10), cluster.host("b", 11), cluster.host("c", 12)
    cluster.write(
        record(
            "bgpconfigurations",
            "default",
            {"asNumber": 64512, "nodeToNodeMeshEnabled": True},
        ),
        pool("default-ipv4-ippool", "10.20.0.0/16"),
        node(a),
        node(b),
    )
    for h, prefix in ((a, "10.20.1.0/26"), (b, "10.20.2.0/26"), (c, "10.20.3.0/26")):
        h.add_block(prefix)
    a.start_bgpd()
    b.start_bgpd()
    wait_for(lambda: established(a) == {b.address} and established(b) == {a.address}, DEADLINE, "a-b up")
    wait_for(lambda: "10.20.2.0/26" in a.bird_routes(), DEADLINE, "a learns b's block")
    before = sessions(a)[b.address]

    # c joins: its Node record first, then its bgpd
    cluster.write(node(c))
    wait_for(lambda: c.address in sessions(a) and c.address in sessions(b), DEADLINE, "a and b configure c")
    c.start_bgpd()
    wait_for(
        lambda: established(c) == {a.address, b.address} and c.address in established(a) & established(b),
        DEADLINE,
        "c's sessions up",
    )
    wait_for(
        lambda: "10.20.3.0/26" in a.bird_routes() and "10.20.3.0/26" in b.bird_routes(),
        DEADLINE,
        "a and b learn c's block",
    )
    assert "10.20.1.0/26" in c.bird_routes() and "10.20.2.0/26" in c.bird_routes()
    assert status(a)["datastore"]["up"] is True
    shown = a.ctl("show", "config").stdout
    assert "derived from the datastore" in shown and f"- {c.address}" in shown, shown

    # c leaves: its Node record deleted (c's bgpd keeps running on its last state, as a host being drained)
    cluster.write(delete("nodes", "c"))
    wait_for(lambda: c.address not in sessions(a) and c.address not in sessions(b), DEADLINE, "c removed")
    wait_for(
        lambda: "10.20.3.0/26" not in a.bird_routes() and "10.20.3.0/26" not in b.bird_routes(),
        DEADLINE,
        "c's routes gone",
    )
    after = sessions(a)[b.address]
    assert (after["since"], after["flaps"]) == (before["since"], before["flaps"]), "a-b was reset"
    assert after["state"] == "up"
    # c cannot be configured any more: it says so and keeps its last configuration
    wait_for(
        lambda: "no Node record" in status(c)["datastore"]["error"], DEADLINE, "c reports its record gone"
    )
    assert any(p["address"] == a.address for p in c.ctl_json("show", "peers"))


def test_changed_peer_resets_only_that_session(cluster: Cluster) -> None:
    """Explicit BGPPeers between a and c (replacing their mesh session) with a TCP-MD5 password from a
    mounted Secret; the password changed in both records: a-c is reset, a-b and b-c are not."""
    a, b, c = cluster.host("a", 10), cluster.host("b", 11), cluster.host("c", 12)
    for h in (a, c):
        directory = h.workdir / "secrets" / "bgp-passwords"
        directory.mkdir(parents=True)
        (directory / "a-c").write_text("first-secret\n")
        (directory / "a-c-new").write_text("second-secret\n")

    def peers(key: str) -> list[dict[str, str]]:
        password = {"secretKeyRef": {"name": "bgp-passwords", "key": key}}
        return [
            record(
                "bgppeers",
                f"{x.name}-to-{y.name}",
                {"node": x.name, "peerIP": y.address, "asNumber": 64512, "password": password},
            )
            for x, y in ((a, c), (c, a))
        ]

    cluster.write(pool("p1", "10.20.0.0/16"), node(a), node(b), node(c), *peers("a-c"))
    for h in (a, b, c):
        h.start_bgpd()
    wait_for(
        lambda: established(a) == {b.address, c.address} and established(c) == {a.address, b.address},
        DEADLINE,
        "every session up",
    )
    assert sessions(a)[c.address]["type"] == "peer" and sessions(a)[b.address]["type"] == "mesh"
    exabgp_conf = "".join(p.read_text() for p in (a.workdir / "run").glob("*.conf"))
    assert "md5-password 'first-secret'" in exabgp_conf or 'md5-password "first-secret"' in exabgp_conf
    before_a, before_c = sessions(a), sessions(c)
    cluster.write(*peers("a-c-new"))
    wait_for(lambda: sessions(a)[c.address]["since"] != before_a[c.address]["since"], DEADLINE, "a-c reset")
    wait_for(lambda: established(a) == {b.address, c.address}, DEADLINE, "a-c up again with the new key")
    after_a, after_c = sessions(a), sessions(c)
    for before, after, other in ((before_a, after_a, b.address), (before_c, after_c, b.address)):
        assert (after[other]["since"], after[other]["flaps"]) == (
            before[other]["since"],
            before[other]["flaps"],
        ), "a session to b was reset"
    assert "first-secret" not in (a.workdir / "bgpd.log").read_text()


def test_pool_change_rechecks_routes(cluster: Cluster) -> None:
    a, b = cluster.host("a", 10), cluster.host("b", 11)
    cluster.write(
        pool("p1", "10.20.0.0/16"),
        pool("p2", "10.30.0.0/16"),
        node(a),
        node(b),
    )
    b.add_block("10.20.2.0/26")
    b.add_block("10.30.2.0/26")
    a.start_bgpd()
    b.start_bgpd()
    wait_for(
        lambda: {"10.20.2.0/26", "10.30.2.0/26"} <= set(a.bird_routes()), DEADLINE, "a learns both blocks"
    )
    before = sessions(a)[b.address]
    cluster.write(delete("ippools", "p2"))
    wait_for(lambda: "10.30.2.0/26" not in a.bird_routes(), DEADLINE, "p2's route gone from a")
    assert "10.20.2.0/26" in a.bird_routes()
    after = sessions(a)[b.address]
    assert (after["since"], after["flaps"]) == (before["since"], before["flaps"]), "a-b was reset"


def test_etcd_outage_keeps_routing_and_applies_the_change_made_meanwhile(cluster: Cluster) -> None:
    a, b, c = cluster.host("a", 10), cluster.host("b", 11), cluster.host("c", 12)
    cluster.write(pool("p1", "10.20.0.0/16"), node(a), node(b))
    b.add_block("10.20.2.0/26")
    c.add_block("10.20.3.0/26")
    a.start_bgpd()
    b.start_bgpd()
    wait_for(lambda: "10.20.2.0/26" in a.bird_routes(), DEADLINE, "a learns b's block")
    before = sessions(a)[b.address]

    cluster.etcd.stop()
    stopped = time.monotonic()
    wait_for(lambda: status(a)["datastore"]["up"] is False, DEADLINE, "a notices etcd is down")
    code, text = a.http_get("http://127.0.0.1:9179/readyz")
    assert code == 503 and "datastore down" in text, text
    code, metrics = a.http_get("http://127.0.0.1:9179/metrics")
    assert "bgpd_datastore_up 0.0" in metrics
    shown = a.ctl("show", "status").stdout
    assert "DOWN since" in shown and "routing on the last known state" in shown, shown
    # routes keep flowing on the existing session while etcd is away
    b.add_block("10.20.4.0/26")
    wait_for(lambda: "10.20.4.0/26" in a.bird_routes(), DEADLINE, "a learns a new block during the outage")
    # a change made while bgpd could not see it: etcd comes back with it (written as soon as etcd runs,
    # before the watchers' backoff ends)
    wait_for(lambda: time.monotonic() - stopped >= 30.0, 40.0, "30 s of outage")
    assert "10.20.2.0/26" in a.bird_routes(), "nothing is withdrawn because the datastore is away"
    cluster.etcd.start()
    cluster.write(node(c))
    wait_for(lambda: status(a)["datastore"]["up"] is True, 60.0, "a resynchronises")
    wait_for(lambda: c.address in sessions(a) and c.address in sessions(b), DEADLINE, "c configured after")
    assert status(a)["datastore"]["resyncs"] >= 1
    code, text = a.http_get("http://127.0.0.1:9179/readyz")
    assert code == 200, text
    after = sessions(a)[b.address]
    assert (after["since"], after["flaps"]) == (before["since"], before["flaps"]), "a-b was reset"


def test_route_reflector_from_selectors(cluster: Cluster) -> None:
    """Calico's documented route-reflector setup applied to a running mesh: rr's Node gets a label and a
    routeReflectorClusterID, a BGPPeer (`nodeSelector: all()`, `peerSelector: route-reflector == 'true'`)
    makes every node peer with it, and the mesh is turned off. No bgpd restarts; rr keeps installing
    routes (a Calico node with a cluster id is a whole node), and its clients reach each other through it."""
    rr, a, b = cluster.host("rr", 5), cluster.host("a", 10), cluster.host("b", 11)
    mesh = {"asNumber": 64512, "nodeToNodeMeshEnabled": True}
    cluster.write(
        record("bgpconfigurations", "default", mesh),
        pool("p1", "10.20.0.0/16"),
        node(rr),
        node(a),
        node(b),
    )
    rr.add_block("10.20.5.0/26")
    a.add_block("10.20.1.0/26")
    b.add_block("10.20.2.0/26")
    for h in (rr, a, b):
        h.start_bgpd()
    wait_for(lambda: established(rr) == {a.address, b.address}, DEADLINE, "the mesh up")
    pids = [h.bgpd.popen.pid for h in (rr, a, b) if h.bgpd is not None]

    cluster.write(
        node(rr, {"route-reflector": "true"}, routeReflectorClusterID="244.0.0.1"),
        record(
            "bgppeers",
            "peer-with-route-reflectors",
            {"nodeSelector": "all()", "peerSelector": "route-reflector == 'true'"},
        ),
        record("bgpconfigurations", "default", {**mesh, "nodeToNodeMeshEnabled": False}),
    )
    wait_for(
        lambda: (
            {p["type"] for p in sessions(rr).values()} == {"rr-client"}
            and established(rr) == {a.address, b.address}
            and established(a) == {rr.address}
            and established(b) == {rr.address}
        ),
        DEADLINE,
        "every host peering with the reflector only",
    )
    assert status(rr)["role"] == "reflector" and status(a)["role"] != "reflector"
    assert status(rr)["last_reload"]["ok"], status(rr)["last_reload"]
    wait_for(
        lambda: (
            {"10.20.2.0/26", "10.20.5.0/26"} <= set(a.bird_routes())
            and {"10.20.1.0/26", "10.20.5.0/26"} <= set(b.bird_routes())
            and {"10.20.1.0/26", "10.20.2.0/26"} <= set(rr.bird_routes())
        ),
        DEADLINE,
        "routes reflected between the clients, and installed on the reflector",
    )
    assert a.bird_routes()["10.20.2.0/26"] == [b.address]  # reflected: the next hop is b's own
    assert [h.bgpd.popen.pid for h in (rr, a, b) if h.bgpd is not None] == pids, "a bgpd was restarted"
    assert all(h.bgpd is not None and h.bgpd.alive() for h in (rr, a, b))
