"""A local development environment: a real Kubernetes control plane and a real OAuth server.

Shared by the tests, `make demo` and the benchmarks. Not part of the shipped wheel.
"""
