"""Helpers for the test_serve_*.py tests: start tests/tools/serve_demo (the supervisor's
HTTP servers fed by a synthetic training loop) and talk to it."""
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, base_env, free_port


def demo_binary():
    runner = Path(os.environ.get("RUNNER_BIN", ROOT / "build/release/runner"))
    tool = runner.parent / "tools" / "serve_demo"
    if not tool.exists():
        pytest.skip(f"{tool} is not built")
    return tool


class Demo:
    """A running serve_demo; ports in .metrics, .api, .dashboard."""

    def __init__(self, *args, env=None):
        self.metrics, self.api, self.dashboard = free_port(), free_port(), free_port()
        cmd = [str(demo_binary()), "--bind", "127.0.0.1",
               "--metrics-port", str(self.metrics), "--api-port", str(self.api),
               "--dashboard-port", str(self.dashboard), *map(str, args)]
        self.proc = subprocess.Popen(cmd, env=env or base_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines = []
        deadline = time.time() + 20
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if '"demo_ready"' in line:
                return
        self.stop()
        raise AssertionError("serve_demo did not start:\n" + "".join(self.lines))

    def url(self, port, path):
        return f"http://127.0.0.1:{port}{path}"

    def get(self, port, path, method="GET", headers=None, data=None, timeout=10):
        """(status, headers, body bytes) without raising on HTTP errors."""
        req = urllib.request.Request(self.url(port, path), method=method,
                                     headers=headers or {}, data=data)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, path, port=None):
        status, _, body = self.get(port or self.api, path)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def wait_phase(self, phase, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.json("/api/v1/status")["phase"] == phase:
                return
            time.sleep(0.1)
        raise AssertionError(f"phase {phase} not reached")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                out, _ = self.proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, _ = self.proc.communicate()
            self.lines.append(out or "")
        return self.proc.returncode

    def output(self):
        return "".join(self.lines)


@pytest.fixture
def demo_factory():
    started = []

    def start(*args, env=None):
        d = Demo(*args, env=env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()
