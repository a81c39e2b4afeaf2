"""The fault suite (docs/faults.md) is a pytest run of its own, beside tests/integration:
two folders' conftest.py modules would both be `conftest` in one run. It reuses the
integration suite's fixtures, hooks and helpers (tests/integration/harness.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from harness import *  # noqa: E402,F401,F403 - fixtures and pytest hooks are found by name
