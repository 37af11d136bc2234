"""The cluster's datastore (issue 15): Calico's v3 resources, as Calico stores them in etcd, turned into
bgpd's `bgpd.config.Config`.

This package owns the pure part, with no I/O: Calico's label selectors (`selector`), the v3 resource JSON
validated into frozen records (`resources`) and the derivation of one node's configuration from the whole
set (`derive`), as Calico's confd derives BIRD's. The etcd client that lists and watches the records, and
the daemon's reload path that applies a new derivation, live elsewhere (`bgpd.datastore.etcd`, the daemon).
"""
