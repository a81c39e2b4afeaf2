"""The dashboard on 8265 in headless Chromium, driven over the DevTools protocol:
the page loads with no console error (CSP violations included), its charts hold the
points /api/v1/history returns (loaded at start and then streamed over SSE), the
tables show trials and the log, and a screenshot is saved."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import pytest

from conftest import ROOT, free_port
from serve_helpers import demo_factory  # noqa: F401  (fixture)

websocket = pytest.importorskip("websocket")


class Browser:
    """Headless Chromium with one page, spoken to over its DevTools websocket."""

    def __init__(self, tmp):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if not exe:
            pytest.skip("chromium is not installed")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking",
             f"--remote-debugging-port={self.port}", "--remote-allow-origins=*",
             f"--user-data-dir={tmp}", "--window-size=1400,2200", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        target = None
        while time.time() < deadline and not target:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=2) as r:
                    pages = [t for t in json.load(r) if t["type"] == "page"]
                    target = pages[0] if pages else None
            except OSError:
                time.sleep(0.2)
        assert target, "chromium did not open its DevTools port"
        self.ws = websocket.create_connection(target["webSocketDebuggerUrl"], timeout=30)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                assert "error" not in msg, msg
                return msg.get("result", {})
            self.events.append(msg)

    def evaluate(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=True)
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")

    def errors(self):
        """Console errors, uncaught exceptions and browser log errors (CSP, 404s)."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(("console", [a.get("value", a.get("description")) for a in p["args"]]))
            elif m == "Runtime.exceptionThrown":
                out.append(("exception", p["exceptionDetails"].get("text"),
                            p["exceptionDetails"].get("exception", {}).get("description")))
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                out.append(("log", p["entry"].get("text"), p["entry"].get("url")))
        return out

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def chart_points(browser, canvas):
    """{dataset label: [[x, y], ...]} of one chart."""
    return browser.evaluate(
        "(() => { const c = window.runnerDashboard.charts[%s]; const o = {};"
        " for (const d of c.data.datasets) o[d.label] = d.data.map(p => [p.x, p.y]);"
        " return o; })()" % json.dumps(canvas))


def test_dashboard_shows_the_api_data_live(demo_factory, tmp_path):  # noqa: F811
    # A loop slow enough that the page loads while the prime run is still training, so
    # the last points reach the charts only through the event stream.
    demo = demo_factory("--trials", 3, "--epochs", 3, "--steps", 150, "--step-ms", 40,
                        "--preflight")
    demo.wait_phase("prime")
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    browser = Browser(profile)
    try:
        browser.call("Runtime.enable")
        browser.call("Log.enable")
        browser.call("Page.enable")
        browser.call("Page.navigate", url=demo.url(demo.dashboard, "/"))
        deadline = time.time() + 30
        while time.time() < deadline:
            if browser.evaluate("document.body && document.body.dataset.loaded") == "true":
                break
            time.sleep(0.2)
        assert browser.evaluate("document.body.dataset.loaded") == "true", browser.errors()
        loaded_at = browser.evaluate(
            "(window.runnerDashboard.series.prime['train/loss'] || []).length")
        demo.wait_phase("done")
        time.sleep(1.5)  # the stream sends at most four updates a second

        history = demo.json("/api/v1/history")["series"]
        prime = history["prime"]
        assert len(prime["train/loss"]) == 150
        assert loaded_at < 150, "the page loaded after training ended: nothing was live"

        loss = chart_points(browser, "chart-loss")
        assert loss["train loss"] == [[p[0], p[1]] for p in prime["train/loss"]]
        assert loss["eval loss"] == [[p[0], p[1]] for p in prime["eval/loss"]]
        ev = chart_points(browser, "chart-eval")
        assert ev["eval F1"] == [[p[0], p[1]] for p in prime["eval/f1"]]
        thr = chart_points(browser, "chart-throughput")
        assert thr["tokens/s"] == [[p[0], p[1]] for p in prime["train/tokens_per_second"]]
        trials = chart_points(browser, "chart-trials")
        for t in range(3):
            run = f"trial-{t}"
            assert trials[run] == [[p[0], p[1]] for p in history[run]["eval/loss"]]

        # Header, tables, log tail.
        assert browser.evaluate("document.getElementById('phase').textContent") == "done"
        assert browser.evaluate("document.getElementById('job-id').textContent") == "demo-job"
        assert browser.evaluate("document.getElementById('stream').textContent") == "live"
        rows = browser.evaluate(
            "Array.from(document.querySelectorAll('#trials tbody tr')).map(r => r.cells[0].textContent)")
        assert rows == ["trial-0", "trial-1", "trial-2"]
        log = browser.evaluate("document.getElementById('log').textContent")
        assert "trial_done" in log and "step 140 evaluated" in log
        preflight = browser.evaluate(
            "Array.from(document.querySelectorAll('#preflight tbody tr'))"
            ".map(r => [r.cells[0].textContent, r.cells[1].textContent])")
        assert ["shm", "ok"] in preflight, preflight
        gpu_rows = browser.evaluate("document.querySelector('#gpus tbody').textContent")
        assert "no GPU reported" in gpu_rows  # no NVML on the test machines

        shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        png = base64.b64decode(shot["data"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        (tmp_path / "dashboard.png").write_bytes(png)
        if os.environ.get("RUNNER_UPDATE_SCREENSHOT"):
            out = ROOT / "docs" / "img" / "dashboard.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(png)
        assert browser.errors() == []
    finally:
        browser.close()


def test_dashboard_refuses_framing_and_inline_code(demo_factory):  # noqa: F811
    demo = demo_factory("--trials", 0, "--steps", 1, "--step-ms", 1)
    status, headers, body = demo.get(demo.dashboard, "/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    # Everything the page needs comes from the runner itself: no CDN, no inline script.
    html = body.decode()
    assert "http://" not in html and "https://" not in html
    assert "<script>" not in html
    status, headers, js = demo.get(demo.dashboard, "/assets/chart.umd.min.js")
    assert status == 200 and b"Chart.js v" in js[:200]
    # The dashboard port is read-only: the control endpoints live on the API port only.
    status, _, _ = demo.get(demo.dashboard, "/api/v1/control/stop", method="POST", data=b"")
    assert status == 404
