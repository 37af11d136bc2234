"""Simulated hosts and workloads in network namespaces (the lab, and the project's end-to-end tests)."""
