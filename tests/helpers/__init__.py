"""Shared test helpers: plain functions, constants and classes, imported by test modules and ``tests/conftest.py``.

Nothing here is collected as a test. ``store_fixtures`` is also a pytest plugin (its fixtures are loaded
with ``pytest_plugins``); every other module holds no fixtures: those live in ``tests/conftest.py``.
Keep this package's import light: ``bench/api_load.py`` imports ``tests.helpers.servers``.
"""
