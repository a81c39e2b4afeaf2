"""Multi-node coordination on one machine: three nodes with their own addresses (network
namespaces, or loopback addresses where those are refused), the Batch variables as Batch
sets them, the main node's embedded redis-server (or an external one). The nodes run
tools/coord_node: coord_start() as the supervisor calls it, then steps that all-reduce
through Gloo and stop at step boundaries as the job does.
"""
import json
import os
import signal
import time
import urllib.request

import pytest

from conftest import exit_line, free_port
from coord_helpers import Job, Network, RedisServer, redis_cli, tool

pytestmark = pytest.mark.timeout(120)

FAST = {"RUNNER_HEARTBEAT_MS": "300", "RUNNER_RDZV_LAST_CALL_MS": "200"}


@pytest.fixture
def net3():
    network = Network(3)
    yield network
    network.close()


@pytest.fixture
def node_bin(runner_bin):
    return tool(runner_bin, "coord_node")


def node_args(node_bin, port, *extra):
    return [node_bin, "--redis-port", port, "--rendezvous-timeout", 20, *extra]


def finish(job, timeout=60):
    codes = {}
    for i, p in job.nodes.items():
        try:
            codes[i] = p.wait(timeout)
        except Exception:
            job.kill_all()
            raise
    return codes


def test_three_nodes_rendezvous_allreduce_and_metrics_fan_in(net3, node_bin, port, tmp_path):
    job = Job(net3, node_args(node_bin, port, "--collective", "--steps", 15, "--step-ms", 30),
              env=FAST).start_all()
    ready = {i: p.wait_event("node_ready", 30) for i, p in job.nodes.items()}
    codes = finish(job)
    outputs = {i: p.output() for i, p in job.nodes.items()}
    assert codes == {0: 0, 1: 0, 2: 0}, outputs
    # Ranks follow node indexes; everyone agrees on one key prefix per job and attempt.
    assert sorted(r["rank"] for r in ready.values()) == [0, 1, 2]
    assert {r["prefix"] for r in ready.values()} == {job.prefix}
    if net3.isolated:
        assert [ready[i]["address"] for i in range(3)] == net3.addresses
    # The main node received the other nodes' step metrics up to the last step.
    done = job.nodes[0].events("node_done")[0]
    assert done["fanin"] == {"node1/prime": 15, "node2/prime": 15}, outputs[0]
    # The password never appears in any log line.
    for text in outputs.values():
        assert job.password not in text


@pytest.mark.parametrize("heartbeat_ms", [300, None], ids=["fast", "default-5s"])
def test_killed_node_makes_the_others_checkpoint_and_exit_83(net3, node_bin, port, tmp_path,
                                                             heartbeat_ms):
    # Heartbeats only (no collective): the dead node is found by its missing beats.
    env = dict(FAST)
    if heartbeat_ms is None:
        del env["RUNNER_HEARTBEAT_MS"]  # the production setting: 5 s, 3 missed = dead
    job = Job(net3, node_args(node_bin, port, "--steps", 100000, "--step-ms", 20,
                              "--checkpoint-dir", tmp_path), env=env).start_all()
    for p in job.nodes.values():
        p.wait_event("node_ready", 30)
    time.sleep(1)
    killed_at = time.monotonic()
    job.nodes[2].kill(signal.SIGKILL)
    codes = finish(job, timeout=30)
    elapsed = time.monotonic() - killed_at
    assert codes[0] == 83 and codes[1] == 83, {i: p.output()[-2000:] for i, p in job.nodes.items()}
    # 3 missed beats, scanned on a short timer, plus the checkpoint: within 20 s.
    assert elapsed < 20, elapsed
    if heartbeat_ms is None:
        assert elapsed > 10  # not before three 5 s beats were missed
    for i in (0, 1):
        line = exit_line(job.nodes[i].output())
        assert line["name"] == "PEER_LOST"
        assert "node 2" in line["reason"]
        assert (tmp_path / f"node{i}.ckpt").exists()


def test_killed_node_fails_the_collective_with_83(net3, node_bin, port, tmp_path):
    job = Job(net3, node_args(node_bin, port, "--collective", "--steps", 100000,
                              "--step-ms", 10), env=FAST).start_all()
    for p in job.nodes.values():
        p.wait_event("node_ready", 30)
    time.sleep(1)
    job.nodes[1].kill(signal.SIGKILL)
    codes = finish(job, timeout=30)
    assert codes[0] == 83 and codes[2] == 83, {i: p.output()[-2000:] for i, p in job.nodes.items()}


def test_node_held_back_past_the_join_timeout_exits_82(net3, node_bin, port):
    job = Job(net3, [node_bin, "--redis-port", port, "--rendezvous-timeout", 2], env=FAST)
    job.start(0)
    job.start(1)  # node 2 never comes
    started = time.monotonic()
    codes = finish(job, timeout=30)
    assert codes == {0: 82, 1: 82}, {i: p.output()[-2000:] for i, p in job.nodes.items()}
    assert time.monotonic() - started < 15
    line = exit_line(job.nodes[0].output())
    assert line["name"] == "COORDINATION" and "rendezvous" in line["reason"]


@pytest.mark.parametrize("heartbeat_ms", [300, None], ids=["fast", "default-5s"])
def test_lost_external_redis_ends_a_multi_node_job_with_82(net3, node_bin, heartbeat_ms):
    # Every node's heartbeat thread counts the outage from its first failed call (peer
    # scan, metrics, beat): 3 heartbeats (15 s by default) → stop, exit within 20 s.
    env = dict(FAST)
    if heartbeat_ms is None:
        del env["RUNNER_HEARTBEAT_MS"]
    redis = RedisServer(bind=net3.host_address if net3.isolated else "127.0.0.1")
    try:
        job = Job(net3, [node_bin, "--redis", redis.url, "--rendezvous-timeout", 20,
                         "--steps", 100000, "--step-ms", 20], env=env,
                  password=redis.password).start_all()
        for p in job.nodes.values():
            p.wait_event("node_ready", 30)
        lost_at = time.monotonic()
        redis.close()
        codes = finish(job, timeout=40)
        elapsed = time.monotonic() - lost_at
        assert codes == {0: 82, 1: 82, 2: 82}, {i: p.output()[-2000:] for i, p in job.nodes.items()}
        assert elapsed < 20, elapsed
        if heartbeat_ms is None:
            assert elapsed > 10  # not before three 5 s beats were missed
        for p in job.nodes.values():
            assert redis.password not in p.output()
    finally:
        redis.close()


def test_control_channel_checkpoint_then_stop_reaches_every_node(net3, node_bin, port, tmp_path):
    job = Job(net3, node_args(node_bin, port, "--steps", 100000, "--step-ms", 20,
                              "--checkpoint-dir", tmp_path), env=FAST).start_all()
    for p in job.nodes.values():
        p.wait_event("node_ready", 30)
    main = net3.addresses[0]
    wrap = (lambda argv: net3.wrap(0, argv))
    # A plain redis-cli PUBLISH, as an operator would type it.
    assert redis_cli(job.password, main, port, "PUBLISH", job.prefix + "control",
                     "checkpoint", wrap=wrap) == "3"
    deadline = time.monotonic() + 10
    while not all((tmp_path / f"node{i}.ckpt").exists() for i in range(3)):
        assert time.monotonic() < deadline, "checkpoint command did not reach every node"
        time.sleep(0.05)
    assert all(p.p.poll() is None for p in job.nodes.values())  # they go on
    redis_cli(job.password, main, port, "PUBLISH", job.prefix + "control",
              json.dumps({"command": "stop"}), wrap=wrap)
    codes = finish(job, timeout=30)
    assert codes == {0: 80, 1: 80, 2: 80}, {i: p.output()[-2000:] for i, p in job.nodes.items()}
    for i in range(3):
        assert exit_line(job.nodes[i].output())["name"] == "INTERRUPTED"


def test_runner_nodes_train_data_parallel_and_the_main_api_lists_them(net3, runner_bin, port, tmp_path):
    # The runner binary itself on three nodes: the prime run trains data-parallel over
    # the three ranks (Gloo through the Redis store), the main node's API lists every
    # node of the rendezvous while they train, and all end cleanly together: no node is
    # taken for dead.
    args = [runner_bin, "--architecture", "bert-tiny", "--mode", "train",
            "--max-length", 32, "--instances", 600, "--epochs", 20, "--threads", 1,
            "--redis-port", port, "--rendezvous-timeout", 30]
    job = Job(net3, args, env=FAST)
    api = free_port()
    job.start(0, ["--output", tmp_path / "node0", "--api-port", api, "--metrics-port",
                  free_port(), "--dashboard-port", free_port()])
    for i in (1, 2):
        job.start(i, ["--output", tmp_path / f"node{i}", "--no-serve"])
    job.nodes[0].wait_event("rendezvous_done", 90)
    deadline, view = time.monotonic() + 20, {}
    while time.monotonic() < deadline:
        try:
            url = f"http://{net3.addresses[0]}:{api}/api/v1/nodes"
            with urllib.request.urlopen(url, timeout=2) as r:
                view = json.loads(r.read())
        except OSError:
            break  # the job has ended: judge the last view it served
        if len(view.get("nodes", [])) == 3:
            break
        time.sleep(0.2)
    assert [n["node"] for n in view.get("nodes", [])] == [0, 1, 2], view
    assert [n["state"] for n in view["nodes"]] == ["alive", "alive", "alive"], view
    codes = finish(job, timeout=120)
    outputs = {i: p.output()[-3000:] for i, p in job.nodes.items()}
    assert codes == {0: 0, 1: 0, 2: 0}, outputs
    main = job.nodes[0]
    assert main.events("train_progress") and not main.events("coord_stop_requested"), outputs[0]
    assert {e["rank"] for p in job.nodes.values() for e in p.events("rendezvous_done")} == {0, 1, 2}
    for p in job.nodes.values():
        assert job.password not in p.output()


def test_embedded_redis_killed_on_a_multi_node_job_is_restarted_and_the_job_goes_on(
        net3, node_bin, port):
    job = Job(net3, node_args(node_bin, port, "--collective", "--steps", 120, "--step-ms", 25),
              env={**FAST, "RUNNER_HEARTBEAT_MS": "1000"}).start_all()
    ready = job.nodes[0].wait_event("node_ready", 30)
    for p in job.nodes.values():
        p.wait_event("node_ready", 30)
    time.sleep(0.5)
    os.kill(ready["redis_pid"], signal.SIGKILL)
    codes = finish(job, timeout=60)
    outputs = {i: p.output()[-3000:] for i, p in job.nodes.items()}
    assert codes == {0: 0, 1: 0, 2: 0}, outputs
    assert job.nodes[0].events("redis_server_restarted"), outputs[0]
    assert all(p.events("redis_reconnected") for p in job.nodes.values()), outputs
