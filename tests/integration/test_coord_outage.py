"""An external Redis that goes away and comes back, with the runner binary itself.

A single node works on through the outage: the search's workers wait for their trial
queue (an external Redis that fails over keeps its data: the server here keeps an
append-only file and comes back from it on the same port), training goes on, and the
job finishes 0 with every trial run exactly once and one redis_lost / redis_back pair
in its log; /metrics shows the outage (runner_redis_*), and promtool accepts it. An
outage longer than --redis-outage-timeout ends the job with 82. A multi-node job, whose
nodes cannot see each other without Redis, exits 82 (or 83) within the documented
bound of 3 heartbeats plus the stop: under 20 s with the default 5 s heartbeat.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest

from conftest import base_env, exit_line, free_port
from coord_helpers import Job, Network, Proc, RedisServer

pytestmark = pytest.mark.timeout(240)

TINY = ["--architecture", "bert-tiny", "--max-length", 32, "--seed", 7]
OUTAGE_S = 5


class ExternalRedis:
    """A redis-server on a fixed port that can be killed (SIGKILL) and started again on
    the same port. With `keep_data` it writes an append-only file (fsync on every
    write) and reloads it on restart, as a failed-over ElastiCache keeps its data."""

    def __init__(self, directory, keep_data=True):
        self.port = free_port()
        self.password = uuid.uuid4().hex
        self.directory = directory
        self.keep_data = keep_data
        self.p = None
        directory.mkdir(parents=True, exist_ok=True)
        self.start()

    @property
    def url(self):
        return f"redis://:{self.password}@127.0.0.1:{self.port}"

    def start(self):
        persistence = ("appendonly yes\nappendfsync always\n" if self.keep_data
                       else "appendonly no\n")
        self.p = subprocess.Popen(["redis-server", "-"], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        self.p.stdin.write(f'port {self.port}\nbind 127.0.0.1\nrequirepass "{self.password}"\n'
                           f'dir "{self.directory}"\nsave ""\n{persistence}')
        self.p.stdin.close()
        deadline = time.monotonic() + 10
        while self.cli("PING") != "PONG":
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def kill(self):
        if self.p and self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "--no-auth-warning", "-p", str(self.port), "-a",
                            self.password, *map(str, args)], capture_output=True, text=True)
        return r.stdout.strip()


@pytest.fixture
def redis(tmp_path):
    server = ExternalRedis(tmp_path / "redis")
    yield server
    server.kill()


def start(runner_bin, args, **env):
    return Proc([str(runner_bin), *map(str, args)],
                base_env(RUNNER_LOG_FORMAT="json", RUNNER_HEARTBEAT_MS="1000", **env))


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def sample(text, name):
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} missing:\n{text[-2000:]}"
    return float(m.group(1))


def promtool_ok(text):
    exe = shutil.which("promtool")
    if not exe:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    r = subprocess.run([exe, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and (r.stdout + r.stderr).strip() == "", r.stdout + r.stderr


def trial_ids(proc, event):
    return sorted(int(re.match(r"trial-(\d+)", e["msg"]).group(1)) for e in proc.events(event))


def one_outage(proc):
    lost, back = proc.events("redis_lost"), proc.events("redis_back")
    assert len(lost) == 1 and len(back) == 1, proc.output()[-4000:]
    assert back[0]["outage_ms"] >= (OUTAGE_S - 1.5) * 1000, back[0]


def test_search_waits_through_an_outage_and_runs_every_trial_once(runner_bin, redis, tmp_path):
    trials = 6
    metrics = free_port()
    out = tmp_path / "out"
    # Claims older than 3 s count as abandoned: the 5 s outage makes every running trial
    # look abandoned when Redis is back, and none may be taken over for it.
    proc = start(runner_bin, [*TINY, "--mode", "pipeline", "--workers", 2, "--trials", trials,
                              "--epochs", 2, "--instances", 300, "--redis", redis.url,
                              "--bind", "127.0.0.1", "--metrics-port", metrics,
                              "--api-port", free_port(), "--dashboard-port", free_port(),
                              "--output", out], RUNNER_TRIAL_CLAIM_MS="3000")
    try:
        proc.wait_event("trial_done", 120)  # one done, others running or queued
        redis.kill()
        proc.wait_event("redis_lost", 30)
        during = scrape(metrics)
        promtool_ok(during)
        assert sample(during, "runner_redis_up") == 0
        assert sample(during, "runner_redis_outages_total") == 1
        time.sleep(OUTAGE_S)
        assert proc.p.poll() is None, proc.output()[-3000:]  # it waited
        redis.start()  # the same port, its data back from the append-only file
        proc.wait_event("redis_back", 30)
        after = scrape(metrics)
        promtool_ok(after)
        assert sample(after, "runner_redis_up") == 1
        assert sample(after, "runner_redis_outages_total") == 1
        assert sample(after, "runner_redis_outage_seconds_total") >= OUTAGE_S - 1.5
        code = proc.wait(180)
    finally:
        proc.kill()
    output = proc.output()
    assert code == 0, output[-4000:]
    # Every trial started once and finished once (no takeover of a live worker's trial
    # although every claim looked stale when Redis came back), recorded once.
    assert trial_ids(proc, "trial_start") == list(range(trials)), output[-4000:]
    assert trial_ids(proc, "trial_done") == list(range(trials)), output[-4000:]
    assert not proc.events("trial_reclaimed") and not proc.events("trial_already_complete")
    state = json.loads((out / "artefacts/bert-tiny/hyperparameters/search.json").read_text())
    assert sorted(t["id"] for t in state["completed"]) == list(range(trials))
    one_outage(proc)
    assert redis.password not in output


def test_training_goes_on_through_an_outage(runner_bin, tmp_path):
    redis = ExternalRedis(tmp_path / "redis", keep_data=False)  # training needs no data back
    try:
        # Long enough to outlast the outage on a quiet machine too (3 epochs take 4 s).
        proc = start(runner_bin, [*TINY, "--mode", "train", "--no-serve", "--epochs", 30,
                                  "--early-stopping-patience", 0,
                                  "--instances", 2000, "--redis", redis.url,
                                  "--output", tmp_path / "out"])
        proc.wait_event("train_progress", 60)
        redis.kill()
        proc.wait_event("redis_lost", 30)
        time.sleep(OUTAGE_S)
        steps_during = len(proc.events("train_progress"))
        assert proc.p.poll() is None, proc.output()[-3000:]
        redis.start()  # empty
        proc.wait_event("redis_back", 30)
        code = proc.wait(180)
    finally:
        proc.kill()
        redis.kill()
    assert code == 0, proc.output()[-4000:]
    assert len(proc.events("train_progress")) >= steps_during > 1  # it trained meanwhile
    one_outage(proc)
    assert (tmp_path / "out/artefacts/bert-tiny/prime/model/model.safetensors").exists()


@pytest.mark.parametrize("mode", ["train", "search"])
def test_an_outage_longer_than_the_timeout_exits_82(runner_bin, redis, tmp_path, mode):
    timeout_s = 3
    args = ([*TINY, "--mode", "train", "--epochs", 30, "--early-stopping-patience", 0,
             "--instances", 2000] if mode == "train"
            else [*TINY, "--mode", "pipeline", "--workers", 2, "--trials", 6, "--epochs", 2,
                  "--instances", 300])
    proc = start(runner_bin, [*args, "--no-serve", "--redis", redis.url,
                              "--redis-outage-timeout", timeout_s, "--output", tmp_path / "out"])
    try:
        proc.wait_event("train_progress" if mode == "train" else "trial_start", 120)
        lost_at = time.monotonic()
        redis.kill()
        code = proc.wait(60)
    finally:
        proc.kill()
    took = time.monotonic() - lost_at
    output = proc.output()
    assert code == 82, output[-4000:]
    line = exit_line(output)
    assert line["name"] == "COORDINATION" and "--redis-outage-timeout" in line["reason"], line
    # The timeout, counted from the first failed call (within a heartbeat of the loss),
    # then the workers' stop at a step boundary.
    assert timeout_s <= took < timeout_s + 15, took
    assert len(proc.events("redis_lost")) == 1 and not proc.events("redis_back")
    if mode == "train":
        assert list((tmp_path / "out/artefacts/bert-tiny/prime").glob("checkpoint-*"))


@pytest.fixture
def net2():
    network = Network(2)
    yield network
    network.close()


def test_multi_node_job_exits_82_within_the_bound(net2, runner_bin, tmp_path):
    # The default 5 s heartbeat: 3 heartbeats (15 s) after a node's first failed call it
    # stops, and exits within 20 s of the loss, whatever --redis-outage-timeout says (a
    # node without Redis cannot tell a dead peer from a live one).
    redis = RedisServer(bind=net2.host_address if net2.isolated else "127.0.0.1")
    try:
        args = [runner_bin, *TINY, "--mode", "train", "--instances", 600, "--epochs", 200,
                "--early-stopping-patience", 0,
                "--threads", 1, "--redis", redis.url, "--rendezvous-timeout", 30, "--no-serve"]
        job = Job(net2, args, env={"RUNNER_RDZV_LAST_CALL_MS": "200"}, password=redis.password)
        for i in (0, 1):
            job.start(i, ["--output", tmp_path / f"node{i}"])
        for p in job.nodes.values():
            p.wait_event("train_progress", 120)
        lost_at = time.monotonic()
        redis.close()
        codes = {}
        try:
            for i, p in job.nodes.items():
                codes[i] = p.wait(60)
        finally:
            job.kill_all()
        elapsed = time.monotonic() - lost_at
        outputs = {i: p.output()[-3000:] for i, p in job.nodes.items()}
        assert set(codes.values()) <= {82, 83} and 82 in codes.values(), outputs
        assert 10 < elapsed < 20, elapsed
        for p in job.nodes.values():
            assert redis.password not in p.output()
            if exit_line(p.output())["name"] == "COORDINATION":
                assert "heartbeats" in exit_line(p.output())["reason"]
    finally:
        redis.close()
