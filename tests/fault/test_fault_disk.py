"""The output filesystem fills up mid-run, or is read-only (docs/faults.md "Disk").

Each run gets a tmpfs of its own in a private mount namespace (`unshare -rm`, through
small_disk.py); a sandbox that refuses one skips these tests with a message saying so.
The job is the default pipeline as the other fault tests run it, under its CPU name
`bert-tiny`: preflight sizes the disk a job needs from the architecture's parameters,
and `bert` would ask for the ~900 MB of bert-base, which this tmpfs would have to be
filled with. The disk fills at a point of the job the test picks from an uninterrupted
run's fault points (the worker pauses there, RUNNER_FAULT_INJECT=worker_pause, while the
disk is filled): in a search trial after its first checkpoint, and in the middle of the
prime run's last checkpoint. The job must exit 4 OUTPUT naming the file it could not
write, leave every file under a final name whole and the checkpoint before the failure
complete, and a run resumed from a copy of that output on a disk with room must end
byte for byte as an uninterrupted one. A read-only output is refused by preflight,
before any worker starts."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import base_env
from faults import (artefacts, assert_same_results, checkpoints, demo_copy, exit_event,
                    pipeline_args, result_files, run_to_end, trace_points, whole_files_only)

pytestmark = pytest.mark.timeout(600)

ARCH = "bert-tiny"
SMALL_DISK = Path(__file__).with_name("small_disk.py")
# Preflight wants 2 fp32 copies of bert-tiny's 4.4 M parameters and 64 MiB free.
SIZE = "112m"


@pytest.fixture(scope="module")
def job(runner_bin, tmp_path_factory):
    folder = tmp_path_factory.mktemp("disk-reference")
    args = pipeline_args(demo_copy(folder / "data", 240), 2, 2, architecture=ARCH)
    run = run_to_end(runner_bin, [*args, "--output", folder / "out"],
                     env=base_env(RUNNER_FAULT_TRACE="1"))
    assert run.code == 0, run.output[-3000:]
    return {"args": args, "art": artefacts(folder / "out", ARCH), "points": trace_points(run)}


def where(p):
    """(run dir, step) of a checkpoint point's path."""
    rel = p["detail"].split("/artefacts/" + ARCH + "/", 1)[1]
    folder, rest = rel.split("/checkpoint-", 1)
    return folder, int(rest.split("/", 1)[0])


def fill_point(points, case):
    """Where the disk fills, and the checkpoint saved last before it."""
    manifests = [(i, where(p)) for i, p in enumerate(points)
                 if p["point"] == "checkpoint_file" and p["detail"].endswith("/manifest.json")]
    if case == "search":  # the step after trial-0's first checkpoint
        i, saved = next((i, w) for i, w in manifests if w[0] == "hyperparameters/trial-0")
        at = next(p for p in points[i:] if p["point"] == "train_step")
    else:  # before the model.safetensors of the prime run's last checkpoint
        at = [p for p in points if p["point"] == "checkpoint_file" and "/prime/checkpoint-" in
              p["detail"] and p["detail"].endswith("/model.safetensors")][-1]
        i = points.index(at)
        saved = [w for j, w in manifests if j < i and w[0] == "prime"][-1]
    return f"worker_pause:0:{at['n']}:{at['point']}", saved


class Confined:
    """A run of small_disk.py in a mount namespace of its own."""

    def __init__(self, proc):
        self.code = proc.returncode
        self.output = proc.stdout
        self.reports = {}
        self.lines = []
        for line in proc.stdout.splitlines(keepends=True):
            if line.startswith('{"small_disk"'):
                self.reports.update(json.loads(line)["small_disk"])
            else:
                self.lines.append(line)

    def events(self, name):
        return [json.loads(l) for l in self.lines if f'"event":"{name}"' in l]


def confined(runner_bin, tmp_path, args, readonly=False, fill=None):
    mount, copy = tmp_path / "disk", tmp_path / "copy"
    command = ["unshare", "-rm", sys.executable, SMALL_DISK, "--mount", mount, "--size", SIZE,
               "--copy-to", copy]
    if readonly:
        command.append("--readonly")
    if fill:
        command += ["--fill", fill]
    command += ["--", runner_bin, *args, "--output", mount / "out"]
    try:
        proc = subprocess.run([str(c) for c in command], env=base_env(), capture_output=True,
                              text=True, timeout=300)
    except FileNotFoundError:
        pytest.skip("the sandbox refuses unshare -rm (no unshare): no small filesystem of "
                    "our own to fill")
    run = Confined(proc)
    if "refused" in run.reports or (proc.returncode != 0 and "code" not in run.reports):
        pytest.skip(f"the sandbox refuses unshare -rm + a tmpfs mount: "
                    f"{run.reports.get('refused') or proc.stderr.strip()[-300:]}")
    assert "code" in run.reports, proc.stdout[-3000:] + proc.stderr[-2000:]
    return run, mount, copy


@pytest.mark.parametrize("case", ["search", "prime"])
def test_a_disk_that_fills_mid_run_exits_4_and_keeps_the_last_checkpoint(
        runner_bin, job, tmp_path, case):
    fill, (folder, step) = fill_point(job["points"], case)
    run, mount, copy = confined(runner_bin, tmp_path, job["args"], fill=fill)
    assert run.reports.get("filled"), run.output[-3000:]
    assert run.reports["free_bytes"] == 0
    assert run.reports["code"] == 4, run.output[-3000:]
    line = exit_event(run)
    assert line["name"] == "OUTPUT", line
    assert "No space left on device" in line["reason"] and str(mount / "out") in line["reason"], \
        line
    assert not run.events("job_done")

    # Under a final name every file is whole; the temporaries were removed.
    whole_files_only(copy, case)
    state = checkpoints(artefacts(copy, ARCH))
    assert state[folder][step] is None, state  # the one saved before the disk filled
    # A checkpoint with a manifest is complete; one the failure cut short has none.
    for run_dir, steps in state.items():
        for s, status in steps.items():
            assert status in (None, "no manifest"), (run_dir, s, status)

    # Resumed elsewhere, from a copy: the saved checkpoint carries the job to its end.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(copy, elsewhere)
    again = run_to_end(runner_bin, [*job["args"], "--output", elsewhere])
    assert again.code == 0, again.output[-3000:]
    resumed = [e["msg"] for e in again.events("checkpoint_resumed")]
    assert any(f"/{folder}/checkpoint-{step}:" in m for m in resumed), resumed
    assert_same_results(artefacts(elsewhere, ARCH), job["art"], case)


def test_a_read_only_output_is_refused_by_preflight_before_any_training(runner_bin, job,
                                                                          tmp_path):
    run, mount, copy = confined(runner_bin, tmp_path, job["args"], readonly=True)
    assert run.reports["code"] == 4, run.output[-3000:]
    line = exit_event(run)
    assert line["name"] == "OUTPUT", line
    assert str(mount / "out") in line["reason"] and "Read-only file system" in line["reason"], line
    assert not run.events("worker_start") and not run.events("train_progress")
    assert not list(copy.rglob("*"))  # nothing written
    assert result_files(copy) == {}
