"""Signals as PID 1 and the supervisor's mapping of worker ends (DESIGN §3, §4).

RUNNER_FAULT_INJECT is the test-only hook of runner/fault.h: worker_hang keeps a worker
busy until it is told to stop (then it exits 80 as a checkpointing job would),
worker_crash makes it die of SIGKILL, worker_exit=N makes it exit N."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import base_env, events, exit_line


class Runner:
    """A runner process whose stdout lines are collected as they come."""

    def __init__(self, binary, argv, env):
        self.proc = subprocess.Popen([str(binary), *map(str, argv)], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    def events(self, name):
        return events("".join(list(self.lines)), name)

    def wait_event(self, name, count=1, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.events(name)) >= count:
                return True
            if self.proc.poll() is not None:
                time.sleep(0.2)
                return len(self.events(name)) >= count
            time.sleep(0.02)
        return False

    def finish(self, timeout):
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=5)
        return code, "".join(self.lines)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start(binary, tmp_path, *argv, **env):
    args = ["--no-serve", "--redis", "off", "--output", tmp_path / "out",
            "--architecture", "bert-tiny", *argv]
    return Runner(binary, args, base_env(RUNNER_SHM_PATH=tmp_path, **env))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_is_forwarded_and_exits_80(runner_bin, tmp_path, sig):
    r = start(runner_bin, tmp_path, "--workers", "2",
              RUNNER_FAULT_INJECT="worker_hang:0:0:worker_start,worker_hang:1:0:worker_start")
    try:
        assert r.wait_event("fault_inject", 2, timeout=30), "".join(r.lines)
        sent = time.monotonic()
        r.proc.send_signal(sig)
        code, out = r.finish(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        r.kill()
    assert code == 80, out
    assert elapsed < 5
    line = exit_line(out)
    assert (line["code"], line["name"]) == (80, "INTERRUPTED")
    assert sig.name in line["reason"]
    reaped = r.events("worker_reaped")
    assert sorted(e["rank"] for e in reaped) == [0, 1] and all(e["code"] == 80 for e in reaped)


def test_second_signal_exits_at_once(runner_bin, tmp_path):
    # a worker that ignores the stop (stuck in a collective): the supervisor would wait
    # out its grace period; a second SIGTERM ends everything at once
    r = start(runner_bin, tmp_path, "--workers", "1", RUNNER_STOP_GRACE_S="60",
              RUNNER_FAULT_INJECT="worker_stuck:0:0:worker_start")
    try:
        assert r.wait_event("fault_inject", timeout=30)
        worker_pid = r.events("worker_start")[0]["pid"]
        r.proc.send_signal(signal.SIGTERM)
        assert r.wait_event("stop", timeout=5)
        time.sleep(0.3)
        assert r.proc.poll() is None  # still waiting for the stuck worker
        sent = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        code, out = r.finish(timeout=5)
        elapsed = time.monotonic() - sent
    finally:
        r.kill()
    assert code == 80 and elapsed < 2
    line = json.loads(out.strip().splitlines()[-1])  # the very last line
    assert line["event"] == "exit" and line["code"] == 80
    assert "second SIGTERM" in line["reason"]
    # the worker was killed and reaped before the supervisor's last line
    assert not os.path.exists(f"/proc/{worker_pid}")
    assert not r.events("worker_exit")


def test_worker_that_does_not_stop_is_killed_after_the_grace(runner_bin, tmp_path):
    r = start(runner_bin, tmp_path, "--workers", "1", RUNNER_STOP_GRACE_S="1",
              RUNNER_FAULT_INJECT="worker_stuck:0:0:worker_start")
    try:
        assert r.wait_event("fault_inject", timeout=30)
        sent = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        code, out = r.finish(timeout=10)
        elapsed = time.monotonic() - sent
    finally:
        r.kill()
    assert code == 80 and 1 <= elapsed < 4, (code, elapsed)
    assert r.events("stop_timeout")
    assert "killed after 1 s" in exit_line(out)["reason"]


def test_crashing_worker_stops_the_others_and_exits_83(runner_bin, asan_bin, tmp_path):
    for binary in (runner_bin, asan_bin):
        r = start(binary, tmp_path, "--workers", "3",
                  RUNNER_FAULT_INJECT="worker_hang:0:0:worker_start,worker_hang:2:0:worker_start,"
                                      "worker_crash:1:0:worker_start")
        try:
            code, out = r.finish(timeout=30)
        finally:
            r.kill()
        assert code == 83, out
        line = exit_line(out)
        assert line["name"] == "PEER_LOST"
        assert "worker rank 1 died of signal 9" in line["reason"]
        reaped = {e["rank"]: e for e in r.events("worker_reaped")}
        assert reaped[1]["signal"] == 9
        assert reaped[0]["code"] == 80 and reaped[2]["code"] == 80  # stopped, not orphaned


def test_failing_worker_code_is_the_jobs_code(runner_bin, tmp_path):
    r = start(runner_bin, tmp_path, "--workers", "2",
              RUNNER_FAULT_INJECT="worker_hang:0:0:worker_start,worker_exit=3:1:0:worker_start")
    try:
        code, out = r.finish(timeout=30)
    finally:
        r.kill()
    assert code == 3, out
    assert exit_line(out)["name"] == "BAD_INPUT"


def test_worker_environment_as_torchrun(runner_bin, tmp_path):
    r = start(runner_bin, tmp_path, "--workers", "2",
              RUNNER_FAULT_INJECT="worker_exit=0:0:0:worker_start,worker_exit=0:1:0:worker_start")
    try:
        code, out = r.finish(timeout=30)
    finally:
        r.kill()
    assert code == 0, out
    starts = {e["rank"]: e for e in r.events("worker_start")}
    assert sorted(starts) == [0, 1]
    for rank, event in starts.items():
        assert event["env"] == {"LOCAL_RANK": str(rank), "RANK": str(rank), "WORLD_SIZE": "2",
                                "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                                "MASTER_PORT": "29500"}
    assert exit_line(out)["code"] == 0


def test_sigterm_to_a_training_job_exits_80_within_5s(runner_bin, tmp_path):
    """The real job: SIGTERM in the middle of training -> checkpoint -> 80."""
    r = start(runner_bin, tmp_path, "--epochs", "200", "--trials", "0", "--workers", "1")
    try:
        started = r.wait_event("worker_start", timeout=60)
        time.sleep(3)  # let it load data and start stepping
        if r.proc.poll() is not None:
            code, out = r.finish(timeout=5)
            if "not implemented" in out:
                pytest.skip("the job is not runnable yet")
            pytest.fail(f"the job ended before the signal with {code}:\n{out[-3000:]}")
        assert started
        sent = time.monotonic()
        r.proc.send_signal(signal.SIGTERM)
        code, out = r.finish(timeout=30)
        elapsed = time.monotonic() - sent
    finally:
        r.kill()
    assert code == 80, out[-3000:]
    assert elapsed < 5, elapsed
    assert exit_line(out)["name"] == "INTERRUPTED"


def test_real_job_worker_crash_at_a_step_exits_83(runner_bin, tmp_path):
    """The job calls fault_maybe_inject("step", n): a crash in the middle of training."""
    r = start(runner_bin, tmp_path, "--epochs", "200", "--trials", "0", "--workers", "1",
              RUNNER_FAULT_INJECT="worker_crash:0:3:step")
    try:
        code, out = r.finish(timeout=120)
    finally:
        r.kill()
    if "not implemented" in out:
        pytest.skip("the job is not runnable yet")
    assert code == 83, out[-3000:]
    assert "injected worker_crash at step step 3" in out
    assert "died of signal 9" in exit_line(out)["reason"]


def test_sigusr1_asks_the_job_for_a_checkpoint(runner_bin, tmp_path):
    r = start(runner_bin, tmp_path, "--epochs", "200", "--trials", "0", "--workers", "1")
    try:
        assert r.wait_event("worker_start", timeout=60)
        deadline = time.monotonic() + 60
        while not r.events("train_progress") and time.monotonic() < deadline:
            if r.proc.poll() is not None:
                break
            time.sleep(0.1)
        if r.proc.poll() is not None:
            code, out = r.finish(timeout=5)
            if "not implemented" in out:
                pytest.skip("the job is not runnable yet")
            pytest.fail(f"the job ended early with {code}:\n{out[-3000:]}")
        r.proc.send_signal(signal.SIGUSR1)
        assert r.wait_event("checkpoint_saved", timeout=30), "".join(r.lines)[-3000:]
        assert r.proc.poll() is None  # a checkpoint, not a stop
        r.proc.send_signal(signal.SIGTERM)
        code, out = r.finish(timeout=30)
    finally:
        r.kill()
    assert code == 80
    assert len(r.events("checkpoint_saved")) >= 2  # on request, then at the stop
