"""Route reflection (RFC 4456) on top of bgpd's decision engine: pure logic, no I/O.

- `rules`: to whom a best path is reflected (§6) and how its attributes change (§8).
- `adjout`: what has been sent to each peer (Adj-RIB-Out), and the minimal batched changes to send next.

The speaker (`bgpd.speaker`) runs the same RIB and decision process for a host and for a reflector; with a
`reflector:` section it also feeds every best-path change through these modules to ExaBGP.

Both families (issue 11): IPv4 and IPv6 routes are reflected alike, with their next hop unchanged.
"""
