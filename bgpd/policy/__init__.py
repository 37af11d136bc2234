"""Route policy: what a host announces (`export`) and what it accepts from peers (`importer`). Pure logic.

Both modules take IPv4 and IPv6 routes together and apply the same rules to each family (issue 11).
"""
