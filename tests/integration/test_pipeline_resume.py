"""Checkpoint and resume: a pipeline stopped by SIGTERM (once in the search, once in the
prime run) and started again ends with the same bytes of model.safetensors as an
uninterrupted run; a corrupt newest checkpoint is skipped with a warning and the one
before it is used."""
import json
import signal
import subprocess

import pytest

from conftest import base_env, exit_line, run

pytestmark = pytest.mark.timeout(900)

# Three epochs, no early stopping: after the first evaluation of a run there are two
# more epochs (a second or so) for the SIGTERM to land in.
ARGS = ["--architecture", "bert", "--instances", 480, "--trials", 2, "--epochs", 3,
        "--early-stopping-patience", 0, "--no-serve", "--redis", "off", "--log-format", "json"]


def run_until(runner_bin, out, predicate):
    """Start the pipeline, send SIGTERM at the first log line matching `predicate`."""
    proc = subprocess.Popen([str(runner_bin), *map(str, ARGS), "--output", str(out)],
                            env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines, sent = [], False
    for line in proc.stdout:
        lines.append(line)
        if not sent and predicate(line):
            proc.send_signal(signal.SIGTERM)
            sent = True
    proc.wait(timeout=300)
    return proc.returncode, "".join(lines), sent


def evaluation_of(run_name):
    return lambda line: '"event":"evaluation"' in line and f"run={run_name} epoch=1" in line


def newest_checkpoint(run_dir):
    return max(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def test_sigterm_and_restart_end_with_identical_weights(runner_bin, tmp_path):
    straight = tmp_path / "straight"
    proc = run(runner_bin, *ARGS, "--output", straight, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    art_straight = straight / "artefacts" / "bert"

    resumed = tmp_path / "resumed"
    art = resumed / "artefacts" / "bert"
    # 1. Stopped inside the search, after trial-0's first epoch.
    code, log, sent = run_until(runner_bin, resumed, evaluation_of("trial-0"))
    assert sent and code == 80, log[-3000:]
    assert exit_line(log)["name"] == "INTERRUPTED"
    assert (newest_checkpoint(art / "hyperparameters" / "trial-0") / "manifest.json").exists()

    # 2. Restarted: resumes trial-0; stopped again inside the prime run.
    code, log, sent = run_until(runner_bin, resumed, evaluation_of("prime"))
    assert sent and code == 80, log[-3000:]
    assert '"event":"checkpoint_resumed"' in log
    assert "trial-0" in log.split('"event":"checkpoint_resumed"')[1].split("\n")[0]

    # 3. The newest prime checkpoint is damaged: the restart warns, takes the one before.
    damaged = newest_checkpoint(art / "prime")
    state = damaged / "state.bin"
    data = bytearray(state.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state.write_bytes(bytes(data))
    proc = run(runner_bin, *ARGS, "--output", resumed, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    skipped = [json.loads(line) for line in proc.stdout.splitlines()
               if '"event":"checkpoint_skipped"' in line]
    assert skipped and skipped[0]["level"] == "warn" and damaged.name in skipped[0]["msg"]
    assert "checksum mismatch" in skipped[0]["msg"]

    for path in ("prime/model/model.safetensors", "hyperparameters/best.json",
                 "prime/metrics/testing/fine.txt", "prime/metrics/testing/score.json"):
        assert (art / path).read_bytes() == (art_straight / path).read_bytes(), path


def test_output_outside_the_run_is_never_deleted(runner_bin, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    keep = out / "notes.txt"
    keep.write_text("not the job's")
    (out / "artefacts").mkdir()
    other = out / "artefacts" / "distil"
    other.mkdir()
    (other / "checkpoint-1").mkdir()
    proc = run(runner_bin, "--architecture", "bert", "--instances", 60, "--trials", 0,
               "--epochs", 3, "--save-total-limit", 1, "--early-stopping-patience", 0,
               "--no-serve", "--redis", "off", "--log-format", "json", "--output", out,
               timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert keep.read_text() == "not the job's"
    assert (other / "checkpoint-1").is_dir()
    prime = out / "artefacts" / "bert" / "prime"
    assert len(list(prime.glob("checkpoint-*"))) <= 2  # the newest, and the best if older
    assert '"event":"checkpoint_deleted"' in proc.stdout
