"""Port 6006 as Prometheus sees it: `promtool check metrics` accepts the exposition
while the job runs and when it has finished, and a real Prometheus server (Debian's)
scrapes a running job every second and answers queries for its runner_* series."""
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from conftest import free_port
from serve_helpers import demo_factory  # noqa: F401  (fixture)


def promtool_check(text):
    exe = shutil.which("promtool")
    if not exe:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    r = subprocess.run([exe, "check", "metrics"], input=text, capture_output=True, text=True,
                       timeout=60)
    return r.returncode, r.stdout + r.stderr


def test_promtool_accepts_the_exposition(demo_factory):  # noqa: F811
    demo = demo_factory("--trials", 2, "--epochs", 2, "--steps", 200, "--step-ms", 10,
                        "--workers", 2)
    demo.wait_phase("prime")
    time.sleep(0.5)
    status, headers, body = demo.get(demo.metrics, "/metrics")
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    rc, out = promtool_check(text)
    assert rc == 0, out
    assert out.strip() == "", out  # no lint warnings either
    for family in ("runner_job_info", "runner_step", "runner_loss", "runner_learning_rate",
                   "runner_grad_norm", "runner_tokens_per_second", "runner_samples_per_second",
                   "runner_step_duration_seconds", "runner_trials", "runner_eval_f1",
                   "process_resident_memory_bytes", "process_cpu_seconds_total",
                   "runner_uptime_seconds", "runner_worker_resident_memory_bytes"):
        assert f"# TYPE {family} " in text, family
    assert 'runner_job_info{job_id="demo-job",attempt="1",architecture="bert-tiny",' \
           'mode="pipeline",node="0"} 1' in text
    assert "runner_ready 1" in text
    # No NVML on this machine: no GPU series, and no placeholder values.
    assert "DCGM_" not in text
    demo.wait_phase("done")
    rc, out = promtool_check(demo.get(demo.metrics, "/metrics")[2].decode())
    assert rc == 0 and out.strip() == "", out


def query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_a_real_prometheus_scrapes_the_job(demo_factory, tmp_path):  # noqa: F811
    exe = shutil.which("prometheus")
    if not exe:
        pytest.skip("prometheus is not installed")
    demo = demo_factory("--trials", 1, "--epochs", 1, "--steps", 100000, "--step-ms", 20)
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: runner\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{demo.metrics}']\n")
    prom = subprocess.Popen(
        [exe, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        series = []
        while time.time() < deadline:
            try:
                series = query(port, 'runner_loss{run="prime"}')
                if series and query(port, "count(runner_step_duration_seconds_bucket)"):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert series, "Prometheus never stored runner_loss"
        info = query(port, "runner_job_info")
        assert info[0]["metric"]["job_id"] == "demo-job"
        assert info[0]["metric"]["architecture"] == "bert-tiny"
        up = query(port, 'up{job="runner"}')
        assert up and up[0]["value"][1] == "1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5) as r:
            targets = json.load(r)["data"]["activeTargets"]
        assert targets[0]["health"] == "up" and targets[0]["lastError"] == ""
        # The step keeps rising between scrapes: the values are live, not a snapshot.
        first = float(query(port, 'runner_step{run="prime"}')[0]["value"][1])
        time.sleep(2.5)
        later = float(query(port, 'runner_step{run="prime"}')[0]["value"][1])
        assert later > first
        names = {s["metric"]["__name__"] for s in query(port, '{__name__=~"runner_.+"}')}
        assert {"runner_job_info", "runner_step", "runner_loss", "runner_ready",
                "runner_step_duration_seconds_bucket"} <= names
    finally:
        prom.terminate()
        try:
            prom.wait(timeout=20)
        except subprocess.TimeoutExpired:
            prom.kill()
