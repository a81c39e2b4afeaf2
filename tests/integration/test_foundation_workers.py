"""Workers are programs of their own (runner/worker.h): `runner --worker` started by
posix_spawn of the runner's binary, never fork()ed copies of the multi-threaded
supervisor, and given what they need through their handoff, not their command line."""
import os

import pytest

from conftest import base_env, run
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
