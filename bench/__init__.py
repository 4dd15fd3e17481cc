"""Benchmark harness: the exporter against comparison baselines at mainnet scale.

``python -m bench`` (or ``make bench``) runs everything and prints one table;
``BENCHMARKS.md`` records the results and explains them. The simulated node,
the exporter and every baseline server run in their own processes, so CPU time
and peak RSS are the exporter's alone and the load generator does not share an
interpreter with the server it measures.
"""
