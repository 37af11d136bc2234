"""bgpd: BGP route distribution for Calico-style layer-3 container networks.

ExaBGP runs the BGP sessions; bgpd decides which routes to announce and install.
"""

__version__ = "0.1.0"
