"""The routing information bases: pure Python, no I/O (tested with plain objects).

- `decision`: the BGP decision process (RFC 4271 §9.1.2, RFC 4456 §9) and multipath (ECMP) selection.
- `table`: Adj-RIB-In per peer and the Loc-RIB selection per prefix.
- `deferral`: when a starting speaker's table is complete (RFC 4724 §4.1 selection deferral).

Family-agnostic (issue 11): one table and one decision process for IPv4 and IPv6 prefixes and peers.
"""
