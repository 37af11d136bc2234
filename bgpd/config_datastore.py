"""The configuration's ``datastore`` section (issue 15), parsed for `bgpd.config`: where the cluster's model
is, and what a config file holds when the cluster part comes from there.

```yaml
node: {name: host0}                 # the rest of this node's identity comes from its Node record
datastore:
  type: etcdv3                      # default: none (the YAML file is the whole config)
  endpoints: ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
  ca_file: /etc/bgpd/etcd-ca.pem    # needed for https://; with cert_file + key_file: a client certificate
  cert_file: /etc/bgpd/etcd.pem
  key_file: /etc/bgpd/etcd-key.pem
  username: bgpd                    # etcd's own authentication (optional; with password)
  password: secret
  prefix: /calico/resources/v3/projectcalico.org/
  secrets_dir: /etc/bgpd/secrets    # BGPPeer/BGPConfiguration password secretKeyRef: <dir>/<name>/<key>
```

With ``type: etcdv3`` the file holds only what is this host's own: ``node.name``, ``datastore`` and the
local sections `bgpd.datastore.derive.LOCAL_SECTIONS` (``export``, ``kernel``, ``runtime``, ``metrics``,
``control``, ``health``) plus ``bgp.hold_time``, ``bgp.graceful_restart`` and ``bgp.select_defer_time``.
Every other setting (node address and AS, mesh, peers, pools, filters, reflector) comes from Calico's
resources, and writing it in the file is an error at its line (two sources for one setting would leave
one of them silently ignored). `ClusterFile` is what such a file gives; ``type: none`` keeps the file
the whole configuration.

Errors are `ConfigError`s naming file, line and key, like the rest of the configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bgpd.datastore.etcd import DEFAULT_PREFIX, DatastoreConfig, DatastoreConfigError, parse_endpoint

if TYPE_CHECKING:
    from bgpd.config import _V, ControlConfig, MetricsConfig, RuntimeConfig, _Walker


def _config_error(file: str, line: int, keypath: str, message: str) -> Exception:
    from bgpd.config import ConfigError

    return ConfigError(file, line, keypath, message)


DatastoreType = Literal["none", "etcdv3"]
DATASTORE_TYPES: tuple[DatastoreType, ...] = ("none", "etcdv3")
DATASTORE_KEYS = (
    "type",
    "endpoints",
    "ca_file",
    "cert_file",
    "key_file",
    "username",
    "password",
    "prefix",
    "secrets_dir",
)
# a cluster-mode file's own keys (`bgpd.datastore.derive` passes them through)
LOCAL_SECTIONS = ("export", "kernel", "runtime", "metrics", "control", "health")
LOCAL_BGP_KEYS = ("hold_time", "graceful_restart", "select_defer_time")
CLUSTER_SECTIONS = ("pools", "filters", "reflector")


@dataclass(frozen=True, slots=True)
class DatastoreSection:
    """The parsed ``datastore`` section: ``type`` and, for etcdv3, the client settings (`DatastoreConfig`)
    and the directory holding the password secrets (``<secrets_dir>/<secret name>/<key>``, as Kubernetes
    mounts a Secret; None: passwords given by reference are not found, as confd without the Secret)."""

    type: DatastoreType = "none"
    etcd: DatastoreConfig | None = None
    secrets_dir: str | None = None


@dataclass(frozen=True)
class ClusterFile:
    """A config file whose cluster part comes from the datastore: this node's name, the datastore, the
    local sections as plain data (validated; handed to `bgpd.datastore.derive.derive`) and the parsed
    settings bgpd needs before it has a derivation (where it runs, logs and answers). ``source`` is the
    file name. ``==`` compares everything but ``source``."""

    node_name: str
    datastore: DatastoreSection
    local: Mapping[str, Any]
    runtime: RuntimeConfig
    control: ControlConfig
    metrics: MetricsConfig
    source: str = field(default="<string>", compare=False)

    @property
    def control_socket(self) -> str:
        return self.control.path(self.runtime.dir)


def parse_datastore(w: _Walker, v: _V) -> DatastoreSection:
    """The ``datastore`` mapping; ConfigError at the offending key's line."""
    m = w.mapping(v, DATASTORE_KEYS)
    kind: DatastoreType = "none"
    if "type" in m:
        given = w.string(m["type"], "datastore type").strip().lower()
        if given not in DATASTORE_TYPES:
            raise w.error(m["type"], f"unknown datastore type {given!r}: one of {', '.join(DATASTORE_TYPES)}")
        kind = "etcdv3" if given == "etcdv3" else "none"
    if kind == "none":
        extra = [k for k in m if k != "type"]
        if extra:
            raise w.error(m[extra[0]], "only used with datastore.type etcdv3")
        return DatastoreSection()
    if "endpoints" not in m:
        raise w.error(v, "datastore.type etcdv3 needs endpoints (etcd's client URLs)")
    endpoints: list[str] = []
    for item in w.sequence(m["endpoints"]):
        url = w.string(item, "endpoint")
        try:
            parse_endpoint(url)
        except DatastoreConfigError as exc:
            raise w.error(item, _without_setting(str(exc))) from None
        endpoints.append(url)

    def text(key: str) -> str | None:
        return w.string(m[key], key.replace("_", " ")) if key in m and not w.is_null(m[key]) else None

    try:
        etcd = DatastoreConfig(
            endpoints=tuple(endpoints),
            ca_file=text("ca_file"),
            cert_file=text("cert_file"),
            key_file=text("key_file"),
            username=text("username"),
            password=text("password"),
            prefix=text("prefix") or DEFAULT_PREFIX,
        )
    except DatastoreConfigError as exc:
        message = str(exc)
        key = message.split(":", 1)[0].removeprefix("datastore").lstrip(".")
        if not key:  # a pair or a set of keys ("cert_file and key_file go together"): the one written
            said = message.split(":", 1)[1]
            key = next((k for k in DATASTORE_KEYS[2:] if k in m and k in said), "")
        where = m.get(key, v) if key else v
        path = f"{v.path}.{key}" if key else v.path
        raise _config_error(w.filename, where.line, path, _without_setting(message)) from None
    return DatastoreSection(type=kind, etcd=etcd, secrets_dir=text("secrets_dir"))


def _without_setting(message: str) -> str:
    """``"datastore.endpoints: x"`` -> ``"x"`` (the ConfigError names the key already)."""
    head, sep, rest = message.partition(": ")
    return rest if sep and head.startswith("datastore") and " " not in head else message
