"""Benchmarks: ``make bench`` runs every ``bench_*`` module; results go to ``benchmarks/results``."""
