"""SIGTERM at seeded random points of the default pipeline (docs/faults.md "SIGTERM").

An uninterrupted, traced run (RUNNER_FAULT_TRACE=1) lists every fault point the
pipeline reaches; points are drawn from it with the suite's seed, some from each phase:
the split, the search (its trials' steps, evaluations and files), checkpoint writes
(before each file and half way through one), the prime run, the final evaluation and
the export. At each, the worker sends SIGTERM to the supervisor as Batch sends it to PID
1 (RUNNER_FAULT_INJECT=stop_signal), so the stop is real: forwarded, honoured at the
job's next stop check. The attempt must exit 80 with only complete checkpoints; the next
attempt, the same command on the same output, must exit 0 with results (exported
weights, reports, search state) byte for byte those of the uninterrupted run."""
import time

import pytest

from conftest import base_env
from faults import (artefacts, assert_resumed_only_complete_checkpoints,
                    assert_same_results, checkpoints, describe, draw_points, exit_event,
                    inject, run_to_end, temporaries)

pytestmark = pytest.mark.timeout(1800)

# Points drawn (CI, long) and how many of each phase at least.
COUNTS = {False: 20, True: 40}
AT_LEAST = {"split": 1, "search": 4, "checkpoint": 4, "prime": 2, "evaluation": 3, "export": 3}
# The supervisor SIGKILLs workers that have not stopped after RUNNER_STOP_GRACE_S (25 s;
# Batch kills 5 s later): a stop must land well within it.
STOP_WITHIN_S = 20


def pytest_generate_tests(metafunc):
    if "point_index" in metafunc.fixturenames:
        count = COUNTS[metafunc.config.getoption("--fault-long")]
        metafunc.parametrize("point_index", range(count))


@pytest.fixture(scope="module")
def reference(uninterrupted, fault_seed, fault_long):
    """The uninterrupted run (conftest.py, once per session) and the points drawn here."""
    points = uninterrupted["points"]
    scale = COUNTS[fault_long] // COUNTS[False]
    drawn = draw_points(points, COUNTS[fault_long], fault_seed,
                        {phase: k * scale for phase, k in AT_LEAST.items()})
    print(f"seed {fault_seed}: {len(points)} fault points, drawn:",
          *(describe(p, fault_seed) for p in drawn), sep="\n  ")
    return dict(uninterrupted, drawn=drawn)


def test_sigterm_exits_80_and_the_next_attempt_ends_as_an_uninterrupted_run(
        runner_bin, reference, point_index, tmp_path, fault_seed):
    p = reference["drawn"][point_index]
    context = describe(p, fault_seed)
    out = tmp_path / "out"
    art = artefacts(out)
    command = [*reference["args"], "--output", out]

    sent = {}

    def note_the_signal(run, line):
        if '"event":"fault_inject"' in line and "stop_signal" in line:
            sent.setdefault("at", time.monotonic())

    first = run_to_end(runner_bin, command, env=base_env(RUNNER_FAULT_INJECT=inject("stop_signal", p)),
                       on_line=note_the_signal)
    assert "at" in sent, (context, "the point was not reached", first.output[-3000:])
    ended = time.monotonic()
    assert first.code == 80, (context, first.output[-3000:])
    line = exit_event(first)
    assert line["name"] == "INTERRUPTED" and "SIGTERM" in line["reason"], (context, line)
    assert ended - sent["at"] < STOP_WITHIN_S, (context, ended - sent["at"])
    # A stop writes its checkpoint whole: none is left torn.
    before = checkpoints(art)
    assert all(status is None for run in before.values() for status in run.values()), \
        (context, before)

    second = run_to_end(runner_bin, command)
    assert second.code == 0, (context, second.output[-3000:])
    assert_resumed_only_complete_checkpoints(before, second, context)
    assert_same_results(art, reference["art"], context)
    assert not temporaries(out), (context, temporaries(out))
