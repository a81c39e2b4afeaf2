"""The fault suite (docs/faults.md) is a pytest run of its own, beside tests/integration:
two folders' conftest.py modules would both be `conftest` in one run. It reuses the
integration suite's fixtures, hooks and helpers (tests/integration/harness.py).

Options of this suite:
  --fault-seed N   the seed that draws the fault points (default: a fresh one, printed
                   in the header and in every failure; RUNNER_FAULT_SEED works too)
  --fault-long     the longer variant: the full default job (all the demo data, its 4
                   trials and 2 epochs) at twice the points, and the ASan soak (tests
                   marked fault_long, deselected otherwise; RUNNER_SOAK_RUNS=N runs the
                   soak N times instead of 20). About an hour and a half on 2 cores:
                     .venv/bin/python -m pytest -q tests/fault --fault-long
"""
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import harness  # noqa: E402
from harness import *  # noqa: E402,F401,F403 - fixtures and pytest hooks are found by name


def pytest_addoption(parser):
    harness.pytest_addoption(parser)
    parser.addoption("--fault-long", action="store_true", default=False,
                     help="the full default job at more fault points, and the ASan soak")
    parser.addoption("--fault-seed", type=int, default=None,
                     help="seed of the fault points drawn (default: a fresh one, printed)")


def pytest_configure(config):
    harness.pytest_configure(config)
    config.addinivalue_line("markers", "fault_long: runs only with --fault-long")
    seed = config.getoption("--fault-seed")
    if seed is None and os.environ.get("RUNNER_FAULT_SEED"):
        seed = int(os.environ["RUNNER_FAULT_SEED"])
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    config.fault_seed = seed


def pytest_report_header(config):
    return (f"fault points drawn with seed {config.fault_seed} (rerun: --fault-seed "
            f"{config.fault_seed}); {'long' if config.getoption('--fault-long') else 'CI'} "
            f"variant")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # Also under -q, which hides the header: the seed is what replays a failure.
    terminalreporter.write_line(pytest_report_header(config))


def pytest_collection_modifyitems(config, items):
    harness.pytest_collection_modifyitems(config, items)
    if config.getoption("--fault-long"):
        return
    long_only = [item for item in items if item.get_closest_marker("fault_long")]
    if long_only:  # deselected, not skipped: a skip fails under RUNNER_TEST_STRICT
        config.hook.pytest_deselected(items=long_only)
        items[:] = [item for item in items if not item.get_closest_marker("fault_long")]


@pytest.fixture(scope="session")
def fault_seed(request):
    return request.config.fault_seed


@pytest.fixture(scope="session")
def fault_long(request):
    return request.config.getoption("--fault-long")


@pytest.fixture(scope="session")
def uninterrupted(runner_bin, tmp_path_factory, fault_long):
    """The uninterrupted run the SIGTERM and kill -9 tests compare with, once per session
    (both use the same job): its arguments, artefacts folder and the fault points it
    passed (RUNNER_FAULT_TRACE)."""
    from faults import artefacts, job_args, run_to_end, trace_points
    folder = tmp_path_factory.mktemp("uninterrupted")
    args = job_args(folder / "data", fault_long)
    out = folder / "out"
    run = run_to_end(runner_bin, [*args, "--output", out],
                     env=harness.base_env(RUNNER_FAULT_TRACE="1"), timeout=600)
    assert run.code == 0, run.output[-3000:]
    return {"args": args, "art": artefacts(out), "points": trace_points(run)}
