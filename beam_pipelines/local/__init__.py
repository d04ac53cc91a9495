"""The local stack: emulators and services that stand in for Google Cloud on one machine.

``python -m beam_pipelines.local up|down|status|env`` manages it for people;
the pytest fixtures in ``tests/fixtures/`` use the same classes.
"""
