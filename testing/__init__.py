"""Helpers for the tests and benchmarks (toy model, synthetic frames). Product code never imports this."""
