"""The routing information bases: pure Python, no I/O (tested with plain objects).

- `decision`: the BGP decision process (RFC 4271 §9.1.2, RFC 4456 §9) and multipath (ECMP) selection.
- `table`: Adj-RIB-In per peer and the Loc-RIB selection per prefix.
"""
