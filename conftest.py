"""The shared test platform (``tests/fixtures.py``), for the core's tests and the
plugin template's alike."""

pytest_plugins = ["tests.fixtures"]
