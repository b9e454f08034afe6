"""Benchmarks: ratios measured within one run, written as JSON and printed as a table."""
