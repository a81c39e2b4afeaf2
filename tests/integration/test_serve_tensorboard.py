"""TensorBoard event files, read back with the tensorboard package's own reader
(EventAccumulator): one run directory per trial and one for the prime run, and every
scalar the job logged is there with its step and value (as float32)."""
import math

import numpy as np
import pytest

from serve_helpers import demo_factory  # noqa: F401  (fixture)

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator")


def read_run(path):
    acc = event_accumulator.EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "two-workers"])
def test_every_scalar_is_in_the_event_files(demo_factory, tmp_path, workers):  # noqa: F811
    logdir = tmp_path / "logs"
    demo = demo_factory("--trials", 3, "--epochs", 2, "--steps", 120, "--step-ms", 1,
                        "--logdir", logdir, "--workers", workers)
    demo.wait_phase("done")
    history = demo.json("/api/v1/history")["series"]
    assert demo.stop() == 0  # SIGTERM: files flushed and closed

    runs = sorted(p.name for p in logdir.iterdir())
    assert runs == ["prime", "trial-0", "trial-1", "trial-2"]
    for run in runs:
        files = list((logdir / run).glob("events.out.tfevents.*"))
        assert len(files) == 1, files  # one writer per run directory
        got = read_run(logdir / run)
        want = history[run]
        assert set(got) == set(want), run
        for tag, points in want.items():
            assert len(got[tag]) == len(points), (run, tag)
            for (step, value), (want_step, want_value, _) in zip(got[tag], points):
                assert step == want_step
                assert value == pytest.approx(float(np.float32(want_value)), rel=1e-6) \
                    or (math.isnan(value) and math.isnan(want_value))
    # The prime run's numbers, independently of the API: loss = 2 exp(-s/50) + 0.1.
    prime = read_run(logdir / "prime")
    assert [s for s, _ in prime["train/loss"]] == list(range(1, 121))
    for step, value in prime["train/loss"]:
        assert value == pytest.approx(2.0 * math.exp(-step / 50.0) + 0.1, rel=1e-6)
    assert len(prime["eval/f1"]) == 6  # every 20 steps
