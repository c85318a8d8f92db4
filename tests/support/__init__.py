"""Test support code: what tests need and the shipped package must not contain (the
deterministic fake engine).  Imported as ``support`` (pytest puts ``tests/`` on
``sys.path``, which is also how ``from conftest import ...`` works)."""
