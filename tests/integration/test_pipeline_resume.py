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


def first_step_of(run_name):
    # The first progress line of a run comes after its first step: the stop then lands
    # in the middle of an epoch, so the data position is part of what is resumed.
    return lambda line: '"event":"train_progress"' in line and f'"run":"{run_name}"' in line


def newest_checkpoint(run_dir):
    steps = [p for p in run_dir.glob("checkpoint-*") if p.name.split("-", 1)[1].isdigit()]
    return max(steps, key=lambda p: int(p.name.split("-", 1)[1]))


def trainer_state(checkpoint):
    return json.loads((checkpoint / "trainer_state.json").read_text())


def test_sigterm_and_restart_end_with_identical_weights(runner_bin, tmp_path):
    straight = tmp_path / "straight"
    proc = run(runner_bin, *ARGS, "--output", straight, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    art_straight = straight / "artefacts" / "bert"

    resumed = tmp_path / "resumed"
    art = resumed / "artefacts" / "bert"
    # 1. Stopped inside the search, in the middle of trial-0's first epoch.
    code, log, sent = run_until(runner_bin, resumed, first_step_of("trial-0"))
    assert sent and code == 80, log[-3000:]
    assert exit_line(log)["name"] == "INTERRUPTED"
    state = trainer_state(newest_checkpoint(art / "hyperparameters" / "trial-0"))
    assert state["batch_in_epoch"] > 0 and state["epoch"] == 0

    # 2. Restarted: trial-0 resumes mid-epoch; stopped again in the prime run's first epoch.
    code, log, sent = run_until(runner_bin, resumed, first_step_of("prime"))
    assert sent and code == 80, log[-3000:]
    resumed_lines = [l for l in log.splitlines() if '"event":"checkpoint_resumed"' in l]
    assert resumed_lines and "trial-0" in resumed_lines[0]
    assert '"event":"checkpoint_fingerprint_mismatch"' not in log  # its own checkpoints
    assert trainer_state(newest_checkpoint(art / "prime"))["batch_in_epoch"] > 0

    # 3. Restarted: the prime run resumes mid-epoch; stopped after its first evaluation.
    code, log, sent = run_until(runner_bin, resumed, evaluation_of("prime"))
    assert sent and code == 80, log[-3000:]
    assert '"event":"checkpoint_fingerprint_mismatch"' not in log

    # 4. The newest prime checkpoint is damaged: the restart warns, takes the one before.
    damaged = newest_checkpoint(art / "prime")
    state_bin = damaged / "state.bin"
    data = bytearray(state_bin.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state_bin.write_bytes(bytes(data))
    proc = run(runner_bin, *ARGS, "--output", resumed, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:]
    skipped = [json.loads(line) for line in proc.stdout.splitlines()
               if '"event":"checkpoint_skipped"' in line]
    assert skipped and skipped[0]["level"] == "warn" and damaged.name in skipped[0]["msg"]
    assert "checksum mismatch" in skipped[0]["msg"]

    for path in ("prime/model/model.safetensors", "hyperparameters/best.json",
                 "hyperparameters/trial-0/curve.json", "prime/curve.json",
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


def test_a_changed_setting_does_not_resume_the_old_checkpoint_nor_delete_it(runner_bin, tmp_path):
    # Same output, another learning rate: the first run's checkpoint is another run's.
    args = ["--architecture", "bert", "--instances", 240, "--trials", 0, "--epochs", 2,
            "--early-stopping-patience", 0, "--no-serve", "--redis", "off",
            "--log-format", "json", "--save-total-limit", 1, "--output", tmp_path]
    proc = subprocess.Popen([str(runner_bin), *map(str, args)], env=base_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sent = False
    for line in proc.stdout:
        if not sent and '"event":"checkpoint_saved"' in line and "prime" in line:
            proc.send_signal(signal.SIGTERM)
            sent = True
    assert proc.wait(timeout=300) == 80 and sent
    prime = tmp_path / "artefacts" / "bert" / "prime"
    old = {p.name: trainer_state(p) for p in prime.glob("checkpoint-*")}
    assert old

    again = run(runner_bin, *args, "--learning-rate", 3e-3, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:]
    lines = [json.loads(l) for l in again.stdout.splitlines() if l.startswith("{")]
    mismatches = [l for l in lines if l.get("event") == "checkpoint_fingerprint_mismatch"]
    assert mismatches and all(m["keys"] == ["learning_rate"] for m in mismatches)
    assert not [l for l in lines if l.get("event") == "checkpoint_resumed"]
    # Left as they were, save_total_limit 1 or not; one at a step this run saved too is
    # set aside (renamed), contents unchanged, rather than overwritten.
    aside = {l["checkpoint"].rsplit("/", 1)[1]: l["moved_to"] for l in lines
             if l.get("event") == "checkpoint_set_aside"}
    for name, state in old.items():
        path = aside.get(name, prime / name)
        assert trainer_state(tmp_path.joinpath(path)) == state
        assert '"fingerprint"' in (tmp_path.joinpath(path) / "trainer_state.json").read_text()
    assert aside  # the two runs share step numbers
    # This run's own checkpoints hold its learning rate.
    ours = newest_checkpoint(prime)
    assert trainer_state(ours)["fingerprint"]["learning_rate"] == float.hex(3e-3)
