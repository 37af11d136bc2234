"""A Calico user's config mistakes: Calico's own field names get the name this config uses."""

from __future__ import annotations

import pytest

from bgpd import config as c

NODE = "node: {name: h, address: 192.168.100.10, asn: 64512}\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            NODE + "bgp:\n  peers:\n    - {peerIP: 192.168.100.1, asn: 65001}\n",
            "t.yaml:4: bgp.peers[0]: unknown key 'peerIP' (Calico's peerIP is 'address' here)",
        ),
        (
            NODE + "bgp:\n  peers:\n    - {address: 192.168.100.1, asn: 65001, localASNumber: 64600}\n",
            "t.yaml:4: bgp.peers[0]: unknown key 'localASNumber' "
            "(Calico's localASNumber is 'local_asn' here)",
        ),
        (
            NODE + "bgp: {nodeToNodeMeshEnabled: false}\n",
            "t.yaml:2: bgp: unknown key 'nodeToNodeMeshEnabled' (Calico's nodeToNodeMeshEnabled is "
            "bgp.mesh.enabled in this config)",
        ),
        (
            NODE + "pools: [{cidr: 10.20.0.0/16, ipipMode: CrossSubnet}]\n",
            "t.yaml:2: pools[0]: unknown key 'ipipMode' (Calico's ipipMode is 'ipip' here)",
        ),
        (
            NODE + "filters: [{name: f, exportV4: []}]\n",
            "t.yaml:2: filters[0]: unknown key 'exportV4' (Calico's exportV4 is 'export_v4' here)",
        ),
    ],
)
def test_calico_field_names_point_at_ours(text: str, expected: str) -> None:
    with pytest.raises(c.ConfigError) as info:
        c.parse(text, "t.yaml")
    assert str(info.value) == expected
