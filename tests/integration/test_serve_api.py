"""The JSON API on 6007 against the real runner and the demo: the control endpoints stop
a training job (exit 80, the retryable code) only with the right bearer token, the
event stream delivers status, history, logs and heartbeats, the worker processes'
scalars and log lines reach the supervisor's API, and --no-serve listens nowhere."""
import http.client
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import base_env, exit_line, free_port
from serve_helpers import demo_factory  # noqa: F401  (fixture)


def call(method, port, path, headers=None, timeout=5):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_http(port, path, want=200, timeout=60, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"runner exited {proc.returncode} before {path} was {want}")
        try:
            if call("GET", port, path)[0] == want:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{path} never answered {want}")


def test_control_stop_needs_the_token_and_ends_the_job_with_80(runner_bin, tmp_path):
    metrics, api, dashboard = free_port(), free_port(), free_port()
    env = base_env(RUNNER_CONTROL_TOKEN="tok-1234567890")
    proc = subprocess.Popen(
        [str(runner_bin), "--architecture", "bert-tiny", "--mode", "train", "--redis", "off",
         "--epochs", "50", "--instances", "256", "--output", str(tmp_path / "out"),
         "--bind", "127.0.0.1", "--metrics-port", str(metrics), "--api-port", str(api),
         "--dashboard-port", str(dashboard), "--log-format", "json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(metrics, "/readyz", 200, proc=proc)  # training: past preflight
        assert call("POST", api, "/api/v1/control/stop")[0] == 401
        assert call("POST", api, "/api/v1/control/stop",
                    {"Authorization": "Bearer tok-123456789"})[0] == 401
        assert call("GET", api, "/api/v1/control/stop")[0] == 405
        assert proc.poll() is None  # refused requests changed nothing
        status, body = call("POST", api, "/api/v1/control/stop",
                            {"Authorization": "Bearer tok-1234567890"})
        assert status == 202 and json.loads(body) == {"accepted": "stop"}
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 80, out[-3000:]
    assert exit_line(out)["code"] == 80
    assert "tok-1234567890" not in out  # the token is redacted from the log
    # Two refusals within 10 s: one log line that counts them.
    refused = [json.loads(line) for line in out.splitlines() if '"control_refused"' in line]
    assert len(refused) == 1 and "(1 refused since" in refused[0]["msg"]


def test_a_control_token_too_long_is_refused_at_start(runner_bin, tmp_path):
    r = subprocess.run([str(runner_bin), "--architecture", "bert", "--redis", "off",
                        "--output", str(tmp_path / "out"), "--bind", "127.0.0.1",
                        "--metrics-port", str(free_port()), "--api-port", str(free_port()),
                        "--dashboard-port", str(free_port())],
                       env=base_env(RUNNER_CONTROL_TOKEN="t" * 600), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert exit_line(r.stdout)["reason"] == "RUNNER_CONTROL_TOKEN: longer than 511 bytes"
    assert "t" * 600 not in r.stdout + r.stderr


def test_control_is_refused_without_a_configured_token(demo_factory):  # noqa: F811
    demo = demo_factory("--trials", 0, "--steps", 1)
    status, _, body = demo.get(demo.api, "/api/v1/control/checkpoint", method="POST",
                            headers={"Authorization": "Bearer anything"}, data=b"")
    assert status == 403 and b"RUNNER_CONTROL_TOKEN" in body


def read_events(port, path, until, timeout=15):
    """Read an SSE stream until `until(events)` holds; returns [(event, data)]."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path)
    r = conn.getresponse()
    assert r.status == 200
    assert r.getheader("Content-Type") == "text/event-stream; charset=utf-8"
    events, event, deadline = [], None, time.time() + timeout
    while time.time() < deadline and not until(events):
        line = r.fp.readline().decode()
        if line.startswith("event: "):
            event = line[7:].strip()
        elif line.startswith("data: "):
            events.append((event, json.loads(line[6:])))
    conn.close()
    return events


def test_event_stream_carries_status_history_logs_and_heartbeats(demo_factory):  # noqa: F811
    # Training for ~3 s (history and log events), then idle (heartbeats).
    demo = demo_factory("--trials", 0, "--steps", 150, "--step-ms", 20, "--workers", 1)
    demo.wait_phase("prime")
    cursor = demo.json("/api/v1/history")["cursor"]
    events = read_events(
        demo.api, f"/api/v1/events?cursor={cursor}&logs=0&heartbeat_ms=300",
        lambda ev: {"status", "history", "logs", "heartbeat"} <= {e for e, _ in ev}
        and sum(e == "history" for e, _ in ev) >= 3)
    kinds = [e for e, _ in events]
    assert kinds[0] == "status"
    assert {"history", "logs", "heartbeat"} <= set(kinds)
    # History deltas: only points after the cursor, steps rising across events.
    steps = [p[0] for e, d in events if e == "history"
             for p in d["series"].get("prime", {}).get("train/loss", [])]
    assert steps and steps == sorted(steps) and len(set(steps)) == len(steps)
    assert all(d["cursor"] > cursor for e, d in events if e == "history")
    # Log lines from the worker processes carry their rank.
    lines = [line for e, d in events if e == "logs" for line in d["lines"]]
    assert any(line.get("rank") == 0 and line["event"] == "eval" for line in lines)
    # At most four updates a second per stream.
    status_events = kinds.count("status")
    assert status_events <= 4 * 15 + 1


def test_worker_scalars_and_logs_reach_the_api(demo_factory):  # noqa: F811
    demo = demo_factory("--trials", 2, "--epochs", 2, "--steps", 60, "--step-ms", 2,
                        "--workers", 3)
    demo.wait_phase("done")
    time.sleep(0.3)
    status = demo.json("/api/v1/status")
    assert status["latest"]["prime"]["train/loss"]["step"] == 60
    assert status["telemetry"]["dropped"] == 0
    assert {"rank-1", "rank-2"} <= set(status["latest"])  # the other workers' heartbeats
    nodes = demo.json("/api/v1/nodes")["nodes"]
    assert len(nodes) == 1 and len(nodes[0]["workers"]) == 3
    assert all(w["pid"] > 0 for w in nodes[0]["workers"])
    trials = demo.json("/api/v1/trials")["trials"]
    assert sorted(t["run"] for t in trials) == ["trial-0", "trial-1"]
    assert all("eval/f1" in t["latest"] for t in trials)
    logs = demo.json("/api/v1/logs?max=500")["lines"]
    assert any(line["event"] == "trial_done" and line.get("rank") == 0 for line in logs)
    seqs = [line["seq"] for line in logs]
    assert seqs == sorted(seqs)
    newer = demo.json(f"/api/v1/logs?since={seqs[-1] + 1}")
    assert newer["lines"] == [] and newer["next"] == seqs[-1] + 1


def test_no_serve_listens_nowhere(demo_factory):  # noqa: F811
    demo = demo_factory("--no-serve", "--trials", 0, "--steps", 1)
    for port in (demo.metrics, demo.api, demo.dashboard):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
