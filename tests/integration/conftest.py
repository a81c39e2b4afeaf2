"""The integration suite's fixtures and hooks live in harness.py, so that the fault
suite (tests/fault, its own pytest run) can load the same ones."""
from harness import *  # noqa: F401,F403 - fixtures and pytest hooks are found by name
