"""Benchmarks that compare jaxdistil's step with other implementations.

See benchmarks/README.md.
"""
