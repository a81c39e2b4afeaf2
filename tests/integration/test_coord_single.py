"""Coordination of a single node, with the runner binary itself: the embedded
redis-server (supervised: killed while the job trains, it comes back and the job
finishes), the control channel (a plain redis-cli PUBLISH stops the job: checkpoint,
exit 80), the shared trial queue of the search across workers, and the refusals
(no password off loopback: 2; unreachable Redis: 82; passwords never logged).
"""
import json
import re
import socket
import time
import uuid

import pytest

from conftest import base_env, exit_line, free_port, run
from coord_helpers import Proc, redis_cli

pytestmark = pytest.mark.timeout(180)

TINY = ["--architecture", "bert-tiny", "--no-serve", "--max-length", 32, "--seed", 7]


def train_args(port, out, instances=300, epochs=2):
    return [*TINY, "--mode", "train", "--redis-port", port, "--epochs", epochs,
            "--instances", instances, "--output", out]


def start(runner_bin, args, **env):
    return Proc([str(runner_bin), *map(str, args)],
                base_env(RUNNER_LOG_FORMAT="json", **env))


def redis_pid(proc):
    line = proc.wait_event("redis_server_started", 30)
    return int(re.search(r"pid (\d+)", line["msg"]).group(1))


def test_single_node_keeps_training_through_a_redis_restart(runner_bin, port, tmp_path):
    import os
    import signal
    proc = start(runner_bin, train_args(port, tmp_path / "out", instances=250, epochs=1))
    pid = redis_pid(proc)
    proc.wait_event("train_progress", 60)
    os.kill(pid, signal.SIGKILL)
    code = proc.wait(150)
    out = proc.output()
    assert code == 0, out[-3000:]
    assert proc.events("redis_server_restarted"), out[-3000:]
    assert exit_line(out)["name"] == "OK"
    assert (tmp_path / "out/artefacts/bert-tiny/prime/model/model.safetensors").exists()


def test_stop_command_on_the_control_channel_checkpoints_and_exits_80(runner_bin, port, tmp_path):
    job, password = f"job-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    proc = start(runner_bin, train_args(port, tmp_path / "out", instances=2000, epochs=3),
                 AWS_BATCH_JOB_ID=job, REDIS_PASSWORD=password)
    proc.wait_event("train_progress", 60)
    assert redis_cli(password, "127.0.0.1", port, "PUBLISH", f"runner:{job}:1:control",
                     "stop") == "1"
    code = proc.wait(60)
    out = proc.output()
    assert code == 80, out[-3000:]
    assert "control" in exit_line(out)["reason"]
    assert list((tmp_path / "out/artefacts/bert-tiny/prime").glob("checkpoint-*"))
    assert password not in out


def test_search_trials_are_shared_by_the_workers_through_redis(runner_bin, port, tmp_path):
    proc = start(runner_bin, [*TINY, "--mode", "pipeline", "--workers", 2, "--trials", 3,
                              "--epochs", 1, "--instances", 60, "--redis-port", port,
                              "--output", tmp_path / "out"])
    code = proc.wait(170)
    out = proc.output()
    assert code == 0, out[-3000:]
    done = [e for e in proc.events("trial_done")]
    ranks = {e.get("rank") for e in done}
    ids = sorted(re.match(r"trial-(\d+)", e["msg"]).group(1) for e in done)
    assert ids == ["0", "1", "2"], out[-3000:]  # each trial run once, by some worker
    assert ranks <= {0, 1}
    assert proc.events("trials_seeded")
    best = {e["msg"].split(":")[1] for e in proc.events("search_done")}
    assert len(best) == 1  # both workers agree on the winner


def test_embedded_redis_refuses_to_bind_beyond_loopback_without_a_password(runner_bin, port):
    r = run(runner_bin, *TINY, "--mode", "train", "--redis-port", port,
            env=base_env(RUNNER_REDIS_BIND="0.0.0.0", RUNNER_LOG_FORMAT="json"))
    assert r.returncode == 2, r.stdout[-2000:]
    assert "REDIS_PASSWORD" in exit_line(r.stdout)["reason"]


def test_multi_node_needs_the_shared_password(runner_bin, port):
    r = run(runner_bin, *TINY, "--mode", "train", "--redis-port", port,
            env=base_env(AWS_BATCH_JOB_ID="j#1", AWS_BATCH_JOB_NUM_NODES=2,
                         AWS_BATCH_JOB_NODE_INDEX=1, AWS_BATCH_JOB_MAIN_NODE_INDEX=0,
                         AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS="127.0.0.1",
                         RUNNER_LOG_FORMAT="json"))
    assert r.returncode == 2, r.stdout[-2000:]


def test_unreachable_redis_url_exits_82_without_logging_the_password(runner_bin, tmp_path):
    secret = "pw-" + uuid.uuid4().hex
    closed = free_port()
    started = time.monotonic()
    r = run(runner_bin, *TINY, "--mode", "train", "--redis",
            f"redis://:{secret}@127.0.0.1:{closed}", "--rendezvous-timeout", 2,
            "--output", tmp_path / "out", env=base_env(RUNNER_LOG_FORMAT="json"))
    assert r.returncode == 82, r.stdout[-2000:]
    assert time.monotonic() - started < 30
    assert exit_line(r.stdout)["name"] == "COORDINATION"
    assert secret not in r.stdout + r.stderr


def test_single_node_goes_on_when_the_embedded_port_is_taken(runner_bin, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        r = run(runner_bin, *train_args(taken, tmp_path / "out", instances=60, epochs=1),
                env=base_env(RUNNER_LOG_FORMAT="json"), timeout=120)
    assert r.returncode == 0, r.stdout[-2000:]
    warnings = [json.loads(l) for l in r.stdout.splitlines()
                if '"coord_redis_unavailable"' in l]
    assert warnings and str(taken) in warnings[0]["msg"]


def test_sigterm_while_waiting_for_the_main_node_exits_80_at_once(runner_bin, tmp_path):
    import signal
    proc = start(runner_bin, [*TINY, "--mode", "train", "--redis-port", free_port(),
                              "--rendezvous-timeout", 120, "--output", tmp_path / "out"],
                 AWS_BATCH_JOB_ID="j#1", AWS_BATCH_JOB_NUM_NODES=2, AWS_BATCH_JOB_NODE_INDEX=1,
                 AWS_BATCH_JOB_MAIN_NODE_INDEX=0, REDIS_PASSWORD="pw",
                 AWS_BATCH_JOB_MAIN_NODE_PRIVATE_IPV4_ADDRESS="127.0.0.1")
    time.sleep(1.5)  # connecting to a main node that never comes
    sent = time.monotonic()
    proc.kill(signal.SIGTERM)
    code = proc.wait(30)
    assert code == 80, proc.output()[-2000:]
    assert time.monotonic() - sent < 5
