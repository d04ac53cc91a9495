"""Benchmarks: throughput, CPU per event and peak memory of the jobs' transforms.

Run them all with ``make bench`` (``python -m benchmarks.run_all``); each script also
runs on its own (``python -m benchmarks.batch_hourly_chain --help``). Results and
how to read them: ``docs/benchmarks.md``.
"""
