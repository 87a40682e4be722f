"""Tests of the sluice Python client: python3 -m unittest discover (-s tests)."""
