"""Preflight (`runner --check [--json]`) on fake /dev/shm and cgroup trees, and the TTY
table (DESIGN §3, §4)."""
import json
import os
import pty
import select
import subprocess

import pytest

from conftest import base_env, exit_line, run


def check(binary, *argv, **env):
    proc = run(binary, "--check", "--json", *argv, env=base_env(**env), timeout=60)
    report = json.loads(proc.stdout.splitlines()[0])
    return proc, report


def fake_v2(tmp_path, memory="max", cpu="max 100000"):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / "memory.max").write_text(memory + "\n")
    (root / "cpu.max").write_text(cpu + "\n")
    self_cgroup = tmp_path / "self"
    self_cgroup.write_text("0::/\n")
    return {"RUNNER_CGROUP_ROOT": root, "RUNNER_PROC_CGROUP": self_cgroup}


def test_check_json_reports_every_section(runner_bin, tmp_path):
    proc, report = check(runner_bin, "--output", tmp_path / "out", RUNNER_SHM_PATH=tmp_path,
                         **fake_v2(tmp_path, cpu="200000 100000"))
    assert proc.returncode == 0, proc.stderr
    assert report["ok"] is True and report["code"] == 0 and report["problems"] == []
    for section in ("gpus", "shm", "memory", "cpu", "disk", "memlock", "batch"):
        assert report[section]["status"] in ("ok", "warn", "skip"), section
        assert report[section]["summary"]
    assert report["shm"]["path"] == str(tmp_path)
    assert report["memory"]["cgroup_version"] == 2 and report["memory"]["limit_bytes"] is None
    assert report["cpu"]["quota"] == 2.0
    assert report["disk"]["checked"] == str(tmp_path)
    assert report["elapsed_ms"] < 1000
    assert exit_line(proc.stderr)["code"] == 0


def test_shm_too_small_exits_5_naming_the_job_definition(runner_bin, asan_bin, tmp_path):
    for binary in (runner_bin, asan_bin):
        proc, report = check(binary, "--min-shm", "1000000gb", RUNNER_SHM_PATH=tmp_path)
        assert proc.returncode == 5
        line = exit_line(proc.stderr)
        assert line["name"] == "RESOURCES"
        for needle in ("linuxParameters.sharedMemorySize", "--shm-size", "976.6 TiB"):
            assert needle in line["reason"], line["reason"]
        assert report["shm"]["status"] == "fail" and report["ok"] is False


def test_shm_need_grows_with_workers(runner_bin, tmp_path):
    _, one = check(runner_bin, "--workers", "1", RUNNER_SHM_PATH=tmp_path)
    _, eight = check(runner_bin, "--workers", "8", RUNNER_SHM_PATH=tmp_path)
    assert eight["shm"]["need_bytes"] > one["shm"]["need_bytes"]
    assert eight["shm"]["need_bytes"] > 64 << 20  # more than docker's default /dev/shm
    assert eight["workers"] == 8


def test_missing_shm_exits_5(runner_bin, tmp_path):
    proc, report = check(runner_bin, RUNNER_SHM_PATH=tmp_path / "no-such-shm")
    assert proc.returncode == 5
    assert "no-such-shm" in exit_line(proc.stderr)["reason"]


def test_cgroup_v2_memory_limit_below_need_exits_5(runner_bin, tmp_path):
    proc, report = check(runner_bin, "--architecture", "bert",
                         **fake_v2(tmp_path, memory=str(512 << 20)))
    assert proc.returncode == 5
    assert "resourceRequirements MEMORY" in exit_line(proc.stderr)["reason"]
    assert report["memory"]["limit_bytes"] == 512 << 20


def test_cgroup_v1_limits(runner_bin, tmp_path):
    root = tmp_path / "cgroup"
    (root / "memory" / "docker" / "c1").mkdir(parents=True)
    (root / "cpu" / "docker" / "c1").mkdir(parents=True)
    (root / "memory" / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (root / "memory" / "docker" / "c1" / "memory.limit_in_bytes").write_text(str(32 << 30))
    (root / "cpu" / "docker" / "c1" / "cpu.cfs_quota_us").write_text("400000\n")
    (root / "cpu" / "docker" / "c1" / "cpu.cfs_period_us").write_text("100000\n")
    self_cgroup = tmp_path / "self"
    self_cgroup.write_text("5:memory:/docker/c1\n4:cpu,cpuacct:/docker/c1\n")
    proc, report = check(runner_bin, RUNNER_CGROUP_ROOT=root, RUNNER_PROC_CGROUP=self_cgroup)
    assert proc.returncode == 0, proc.stderr
    assert report["memory"]["cgroup_version"] == 1
    assert report["memory"]["limit_bytes"] == 32 << 30
    assert report["cpu"]["quota"] == 4.0


def test_gpus_required_but_none_visible_exits_81(runner_bin, asan_bin):
    _, plain = check(runner_bin)
    if plain["gpus"]["visible"]:
        pytest.skip("this machine has GPUs")
    for binary in (runner_bin, asan_bin):
        proc, report = check(binary, "--gpus", "2")
        assert proc.returncode == 81
        assert "resourceRequirements GPU" in exit_line(proc.stderr)["reason"]
        proc, _ = check(binary, "--backend", "cuda")
        assert proc.returncode == 81


def test_output_below_a_file_exits_4(runner_bin, tmp_path):
    (tmp_path / "file").write_text("x")
    proc, report = check(runner_bin, "--output", tmp_path / "file" / "out")
    assert proc.returncode == 4
    assert "not a directory" in exit_line(proc.stderr)["reason"]


def test_batch_environment_is_reported(runner_bin):
    proc, report = check(runner_bin, AWS_BATCH_JOB_ID="abc-123", AWS_BATCH_JOB_ATTEMPT="2",
                         AWS_BATCH_JOB_NODE_INDEX="0", AWS_BATCH_JOB_NUM_NODES="2",
                         AWS_BATCH_JOB_MAIN_NODE_INDEX="0")
    assert report["batch"] == {**report["batch"], "job_id": "abc-123", "attempt": "2",
                               "node_index": "0", "num_nodes": "2", "status": "ok"}
    # the job's labels are on every log line
    assert exit_line(proc.stderr)["job_id"] == "abc-123"


def run_on_tty(argv, env):
    """Run with stdout on a pseudo-terminal; returns (code, text)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(argv, stdout=follower, stderr=subprocess.PIPE, env=env)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    code = proc.wait(timeout=30)
    os.close(leader)
    return code, b"".join(chunks).decode(), proc.stderr.read().decode()


def test_check_prints_an_aligned_table_on_a_tty(runner_bin, tmp_path):
    code, text, _ = run_on_tty([str(runner_bin), "--check"], base_env(RUNNER_SHM_PATH=tmp_path))
    assert code == 0
    lines = [l for l in text.replace("\r", "").splitlines() if l.strip()]
    assert lines[0].split() == ["check", "status", "detail"]
    rows = {l.split()[0]: l for l in lines[1:]}
    for section in ("gpus", "shm", "memory", "cpu", "disk", "memlock", "batch", "result"):
        assert section in rows
        # the status column starts at the same offset in every row
        assert rows[section][10:16].strip() in ("ok", "warn", "skip", "fail")
    assert "exit 0 OK" in rows["result"]
    # --json on a TTY still prints JSON
    code, text, _ = run_on_tty([str(runner_bin), "--check", "--json"],
                               base_env(RUNNER_SHM_PATH=tmp_path))
    assert json.loads(text.strip().splitlines()[0])["ok"] is True


def test_log_format_text_and_json(runner_bin, tmp_path):
    env = base_env(RUNNER_SHM_PATH=tmp_path)
    # off a TTY the log is JSON lines; --log-format text forces text
    proc = run(runner_bin, "--check", "--log-format", "text", "--config", "/nonexistent.json",
               env=env, timeout=30)
    assert proc.returncode == 2
    config = tmp_path / "c.json"
    config.write_text('{"EPOCHS": 1, "UNKNOWN_KEY": 1}')
    proc = run(runner_bin, "--check", "--json", "--log-format", "text", "--config", config,
               env=env, timeout=30)
    warning = [l for l in proc.stderr.splitlines() if "config_warning" in l][0]
    assert not warning.startswith("{") and "WARN" in warning and "UNKNOWN_KEY" in warning
    assert json.loads(proc.stderr.strip().splitlines()[-1])["event"] == "exit"  # still JSON
    proc = run(runner_bin, "--check", "--json", "--config", config, env=env, timeout=30)
    warning = [l for l in proc.stderr.splitlines() if "config_warning" in l][0]
    line = json.loads(warning)
    assert line["level"] == "warn" and line["ts"].endswith("Z") and "UNKNOWN_KEY" in line["msg"]
    # on a TTY, auto means text (a run whose preflight fails: its lines go to stdout)
    code, text, _ = run_on_tty([str(runner_bin), "--min-shm", "1000000gb", "--no-serve"], env)
    assert code == 5
    lines = text.replace("\r", "").strip().splitlines()
    start = [l for l in lines if " start" in l][0]
    assert not start.startswith("{") and "INFO" in start
    assert json.loads(lines[-1])["code"] == 5  # the exit line stays JSON
