"""Benchmarks of the autumn_django sync against the local Autumn stand-in (see run.sh)."""
