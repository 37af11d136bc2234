"""The lab's topology file: shipped examples load, what each host announces, errors name file and line."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

import pytest

from bgpd.lab.lab import veth_name
from bgpd.lab.topology import TopologyError, load, parse

ROOT = Path(__file__).resolve().parents[2]
BASE = "name: t\npools: [10.20.0.0/16]\nhosts:\n"
H0 = "  - {name: a, address: 192.168.100.10, blocks: [10.20.1.0/24], workloads: [10.20.1.2]}\n"
H1 = "  - {name: b, address: 192.168.100.3, blocks: [10.20.2.0/24], workloads: [10.20.2.2, 10.20.1.3]}\n"


def test_default_lab_is_the_original_simulation() -> None:
    topo = load(ROOT / "configs" / "lab.yaml")
    host0, host1 = topo.hosts
    assert (host0.name, str(host0.address)) == ("host0", "192.168.100.10")
    assert (host1.name, str(host1.address)) == ("host1", "192.168.100.3")
    assert [str(w) for w in host1.workloads] == ["10.20.2.2", "10.20.1.3"]
    # host1 announces its block and the borrowed /32 from host0's block, not its own /32 inside its block
    assert host1.exported() == {IPv4Network("10.20.2.0/24"), IPv4Network("10.20.1.3/32")}
    assert host0.exported() == {IPv4Network("10.20.1.0/24")}


def test_four_host_lab_has_three_workloads_each() -> None:
    topo = load(ROOT / "configs" / "lab4.yaml")
    assert len(topo.hosts) == 4
    assert all(len(h.workloads) == 3 for h in topo.hosts)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (BASE + H0, "t.yaml:1: hosts: at least two hosts"),
        (BASE + H0 + H1.replace("192.168.100.3", "10.0.0.1"), "t.yaml:5: hosts[1].address: 10.0.0.1 is not"),
        (
            BASE + H0 + H1.replace("192.168.100.3", "192.168.100.1"),
            "t.yaml:5: hosts[1].address: 192.168.100.1 is the",
        ),
        (
            BASE + H0 + H1.replace("10.20.1.3", "10.99.0.1"),
            "t.yaml:5: hosts[1]: 10.99.0.1/32 is outside every pool",
        ),
        (BASE + H0 + H1.replace("name: b", "name: a"), "t.yaml:1: hosts: duplicate host name"),
        (BASE + H0 + H1.replace("10.20.1.3", "10.20.1.2"), "t.yaml:1: hosts: duplicate address"),
        (BASE + H0 + H1.replace("blocks", "blokcs"), "t.yaml:5: hosts[1].blokcs: unknown key"),
        (BASE.replace("name: t", "name: Bad_Name") + H0 + H1, "t.yaml:1: name: 1-10 lower-case"),
        (
            BASE + H0 + H1.replace("address: 192.168.100.3", "address: 1.2.3.400"),
            "t.yaml:5: hosts[1].address:",
        ),
    ],
)
def test_errors_name_file_line_and_key(text: str, error: str) -> None:
    with pytest.raises(TopologyError) as info:
        parse(text, "t.yaml")
    assert str(info.value).startswith(error)


def test_veth_names_look_like_calicos_and_fit_the_kernel_limit() -> None:
    name = veth_name(load(ROOT / "configs" / "lab.yaml").hosts[0].workloads[0])
    assert name.startswith("cali") and len(name) == 15
