"""Workers are programs of their own (runner/worker.h): `runner --worker` started by
posix_spawn of the runner's binary, never fork()ed copies of the multi-threaded
supervisor, and given what they need through their handoff, not their command line."""
import json
import os
import shutil

import pytest

from conftest import base_env, exit_line, free_port, run
from test_foundation_signals import start


def read_proc(pid, name):
    with open(f"/proc/{pid}/{name}", "rb") as f:
        return f.read()


@pytest.mark.parametrize("binary", ["runner_bin", "asan_bin"])
def test_workers_are_exec_d_runner_worker_processes(request, binary, tmp_path):
    exe = request.getfixturevalue(binary)
    r = start(exe, tmp_path, "--workers", "2", "--seed", "424242",
              RUNNER_FAULT_INJECT="worker_hang:0:0:worker_start,worker_hang:1:0:worker_start")
    try:
        assert r.wait_event("fault_inject", 2, timeout=60), "".join(r.lines)
        supervisor = r.proc.pid
        starts = r.events("worker_start")
        assert sorted(e["rank"] for e in starts) == [0, 1]
        for e in starts:
            pid = e["pid"]
            # A fork()ed child would carry the supervisor's whole command line.
            assert read_proc(pid, "cmdline") == b"runner\0--worker\0"
            assert os.path.samefile(f"/proc/{pid}/exe", exe)
            assert int(read_proc(pid, "stat").split()[3]) == supervisor  # ppid
            # Its own process group (a terminal's ^C reaches the supervisor only).
            assert os.getpgid(pid) == pid
            # The handoff was read and closed; the reason pipe (fd 4) is all it keeps
            # beyond stdio of the supervisor's descriptors.
            fds = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
            assert 3 not in fds and 4 in fds
            env = dict(item.split(b"=", 1) for item in read_proc(pid, "environ").split(b"\0")
                       if b"=" in item)
            assert env[b"RANK"] == str(e["rank"]).encode() and env[b"WORLD_SIZE"] == b"2"
            # The configuration came through the handoff: the seed is in the
            # supervisor's flags only.
            assert b"424242" not in read_proc(pid, "cmdline") + read_proc(pid, "environ")
        r.proc.terminate()
        code, out = r.finish(timeout=30)
    finally:
        r.kill()
    assert code == 80, out[-3000:]


@pytest.mark.parametrize("flag", ["--worker", "--gpu-probe"])
def test_internal_modes_by_hand_exit_2_with_one_line(runner_bin, flag):
    proc = run(runner_bin, flag, env=base_env(), timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("runner: ") and flag in lines[0]


# The cases a fork()ed worker could hang in under GCC 12's AddressSanitizer (a lock of a
# supervisor thread inherited held), now in CI's asan run (scripts/test sets
# RUNNER_ASAN_BIN): the whole default job with every server and the embedded Redis on,
# and a three-worker search whose prime run is data-parallel over three ranks. The
# three-rank data-parallel unit test runs under `ctest --preset asan`.
SANITIZER_REPORTS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def events(out, name):
    return [json.loads(line) for line in out.splitlines() if f'"event":"{name}"' in line]


@pytest.mark.timeout(900)
def test_asan_build_runs_the_default_job(asan_bin, tmp_path):
    ports = [free_port() for _ in range(4)]
    proc = run(asan_bin, "--output", tmp_path / "out", "--metrics-port", ports[0],
               "--api-port", ports[1], "--dashboard-port", ports[2], "--redis-port", ports[3],
               "--log-format", "json", env=base_env(RUNNER_SHM_PATH=tmp_path), timeout=800)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert not [r for r in SANITIZER_REPORTS if r in out]
    assert exit_line(proc.stdout)["code"] == 0
    assert events(proc.stdout, "serve_started") and events(proc.stdout, "rendezvous_done")
    assert (tmp_path / "out/artefacts/distil/prime/model/model.safetensors").exists()


@pytest.mark.timeout(900)
@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")
def test_asan_build_runs_a_three_worker_search_and_data_parallel_prime(asan_bin, tmp_path):
    proc = run(asan_bin, "--architecture", "bert", "--workers", 3, "--instances", 240,
               "--trials", 3, "--epochs", 1, "--no-serve", "--redis-port", free_port(),
               "--output", tmp_path / "out", "--log-format", "json",
               env=base_env(RUNNER_SHM_PATH=tmp_path), timeout=800)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert not [r for r in SANITIZER_REPORTS if r in out]
    assert len(events(proc.stdout, "trial_done")) == 3
    prime = [e for e in events(proc.stdout, "evaluation") if "run=prime" in e["msg"]]
    assert sorted(e["rank"] for e in prime) == [0, 1, 2]
    assert len({e["msg"] for e in prime}) == 1  # the three ranks hold the same weights
