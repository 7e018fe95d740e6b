"""Test and demo support, apart from the product: a fake Katapult API on loopback and sample catalogues.

Imported only by the tests, the benchmark and `katapult-etl demo` (an import contract says so).
"""
