"""Benchmarks of models on this machine: `benchmark-sequential`, baseline records, export and import."""
