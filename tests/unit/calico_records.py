"""Calico v3 records as Calico writes them to etcd (`<prefix><plural>/<name>`, JSON of the whole object),
for the datastore tests."""

from __future__ import annotations

import json
from typing import Any

from bgpd.datastore import resources as r

P = r.DEFAULT_PREFIX
KINDS = {
    "nodes": "Node",
    "bgpconfigurations": "BGPConfiguration",
    "bgppeers": "BGPPeer",
    "ippools": "IPPool",
    "bgpfilters": "BGPFilter",
}


def record(kind: str, name: str, spec: Any, labels: dict[str, str] | None = None) -> tuple[str, str]:
    """(key, value) as Calico writes them to etcd."""
    meta: dict[str, Any] = {
        "name": name,
        "resourceVersion": "12",
        "creationTimestamp": "2026-11-30T00:00:00Z",
    }
    if labels is not None:
        meta["labels"] = labels
    obj = {"kind": KINDS[kind], "apiVersion": "projectcalico.org/v3", "metadata": meta, "spec": spec}
    return f"{P}{kind}/{name}", json.dumps(obj)
