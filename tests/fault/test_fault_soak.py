"""The soak (docs/faults.md "Soak"), with --fault-long only: the ASan + UBSan build runs
the jobs of tests/integration/test_foundation_workers.py's one-shot checks 20 times in a
row each, every time from a fresh output: the whole default job with every server and
the embedded Redis on, and a three-worker search whose prime run is data-parallel over
three ranks. A worker that could hang (a lock inherited held, a collective or a
rendezvous waiting for a peer that is gone, a server thread that does not stop) shows
as a run that does not end: each run gets 4 times the first one's duration (at least
5 min), then fails as hung, naming the run and what it logged last."""
import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import base_env, exit_line, free_port

pytestmark = [pytest.mark.fault_long, pytest.mark.timeout(6 * 3600)]

RUNS = int(os.environ.get("RUNNER_SOAK_RUNS", "20"))  # fewer to try the soak itself
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def events(out, name):
    return [json.loads(line) for line in out.splitlines() if f'"event":"{name}"' in line]


def soak(binary, tmp_path, argv, check):
    """Run binary with argv + --output a fresh folder RUNS times; check(output) each."""
    limit = None
    for i in range(RUNS):
        out = tmp_path / f"run-{i}"
        started = time.monotonic()
        try:
            proc = subprocess.run([str(binary), *map(str, argv(out))],
                                  env=base_env(RUNNER_SHM_PATH=tmp_path), capture_output=True,
                                  text=True, timeout=limit)
        except subprocess.TimeoutExpired as e:
            tail = e.stdout or ""
            if isinstance(tail, bytes):
                tail = tail.decode(errors="replace")
            pytest.fail(f"run {i + 1} of {RUNS} hung: no end after {limit:.0f} s; it logged "
                        f"last:\n{tail[-3000:]}")
        took = time.monotonic() - started
        if limit is None:
            limit = max(300.0, 4 * took)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, (f"run {i + 1}", output[-3000:])
        assert not [r for r in SANITIZER_REPORTS if r in output], (f"run {i + 1}", output[-3000:])
        assert exit_line(proc.stdout)["code"] == 0
        check(proc.stdout, out)
        print(f"run {i + 1}/{RUNS}: {took:.1f} s")
        shutil.rmtree(out)


def test_asan_build_runs_the_default_job_20_times_in_a_row(asan_bin, tmp_path):
    def argv(out):
        return ["--output", out, "--metrics-port", free_port(), "--api-port", free_port(),
                "--dashboard-port", free_port(), "--redis-port", free_port(),
                "--log-format", "json"]

    def check(stdout, out):
        assert events(stdout, "serve_started") and events(stdout, "rendezvous_done")
        assert (out / "artefacts/distil/prime/model/model.safetensors").exists()

    soak(asan_bin, tmp_path, argv, check)


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")
def test_asan_build_runs_a_three_worker_search_and_data_parallel_prime_20_times_in_a_row(
        asan_bin, tmp_path):
    def argv(out):
        return ["--architecture", "bert", "--workers", 3, "--instances", 240, "--trials", 3,
                "--epochs", 1, "--no-serve", "--redis-port", free_port(), "--output", out,
                "--log-format", "json"]

    def check(stdout, out):
        assert len(events(stdout, "trial_done")) == 3
        prime = [e for e in events(stdout, "evaluation") if "run=prime" in e["msg"]]
        assert sorted(e["rank"] for e in prime) == [0, 1, 2]
        assert len({e["msg"] for e in prime}) == 1  # the three ranks hold the same weights

    soak(asan_bin, tmp_path, argv, check)
