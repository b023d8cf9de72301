"""Helpers shared by test modules, one copy each (fixtures live in tests/conftest.py)."""
