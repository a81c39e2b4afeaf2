"""Secrets never leave the runner (docs/faults.md "Secrets"): the AWS keys, the Redis
password, the control token and a Hugging Face token are set to canary strings unique
to the run, and a whole job uses every one of them - data from S3 (moto: SigV4 with the
keys, the session token in a header), a gated model from a mock Hub (the token), the
embedded Redis with that password (the trial queue of a 2-trial search), the control
token (a checkpoint requested through the API), every server on. Then no canary may
appear in:

- any line the job writes (stdout, stderr; --verbose for the debug lines too);
- any answer of any endpoint of 6006, 6007 and 8265, an event stream included, fetched
  again and again while the job runs;
- any file under the output, the work directory and the Hub cache (event files,
  artefacts, reports, checkpoints), nor the telemetry segment in /dev/shm;
- any key or value in the embedded Redis;
- the command line (/proc/PID/cmdline) of the runner, its workers and redis-server, nor
  redis-server's environment (it needs no secret, so it gets none);
- any file the job left in /tmp or /dev/shm.

Each check is shown to look where the canaries are: the runner's environment holds them
(/proc/PID/environ, which only its own user and root may read, is where they are meant
to be), Redis refuses a client without the password and answers one with it, the Hub
refuses the model without the token, the API accepts the token.
"""
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from harness import ROOT, base_env, exit_line, free_port

sys.path.insert(0, str(ROOT / "tests" / "integration"))
from hub_mock import MockHub  # noqa: E402

boto3 = pytest.importorskip("boto3")
pytestmark = pytest.mark.timeout(300)

RUN = uuid.uuid4().hex[:12]
CANARIES = {
    "AWS_ACCESS_KEY_ID": f"AKIACANARY{RUN.upper()}",
    "AWS_SECRET_ACCESS_KEY": f"canary-aws-secret-{RUN}",
    "AWS_SESSION_TOKEN": f"canary-aws-session-{RUN}",
    "REDIS_PASSWORD": f"canary-redis-{RUN}",
    "RUNNER_CONTROL_TOKEN": f"canary-control-{RUN}",
    "HF_TOKEN": f"hf_canary{RUN}",
}
REGION, BUCKET, MODEL = "eu-west-1", "secrets", "acme/tiny-gated"
# Every key and value in Redis, streams flattened: what a client with the password sees.
REDIS_DUMP_LUA = """
local out = {}
local function add(v)
  if type(v) == 'table' then for _, x in ipairs(v) do add(x) end else table.insert(out, tostring(v)) end
end
for _, k in ipairs(redis.call('KEYS', '*')) do
  add(k)
  local t = redis.call('TYPE', k)['ok']
  if t == 'string' then add(redis.call('GET', k))
  elseif t == 'hash' then add(redis.call('HGETALL', k))
  elseif t == 'list' then add(redis.call('LRANGE', k, 0, -1))
  elseif t == 'set' then add(redis.call('SMEMBERS', k))
  elseif t == 'zset' then add(redis.call('ZRANGE', k, 0, -1, 'WITHSCORES'))
  elseif t == 'stream' then add(redis.call('XRANGE', k, '-', '+')) end
end
return out
"""


def leaks(where, data):
    """The canaries found in `data` (bytes or str), as "NAME in WHERE" lines."""
    if isinstance(data, str):
        data = data.encode(errors="replace")
    return [f"{name} in {where}" for name, value in CANARIES.items() if value.encode() in data]


def descendants(root):
    """The pids of `root` and every process below it."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def fetch(port, path, method="GET", headers=None, timeout=5, limit=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers=headers or {}, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, str(r.headers), r.read(limit) if limit else r.read()
    except urllib.error.HTTPError as e:
        return e.code, str(e.headers), e.read()


def read_stream(port, seconds):
    """The bytes (headers and events) an event stream sends in `seconds`."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=seconds)
    got = b""
    try:
        c.request("GET", "/api/v1/events?cursor=0&logs=0&heartbeat_ms=100")
        r = c.getresponse()
        got = str(r.headers).encode()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            chunk = r.read1(65536)
            if not chunk:
                break
            got += chunk
    except (OSError, http.client.HTTPException):
        pass  # the stream ended early: what came is still checked
    finally:
        c.close()
    return got


def redis_cli(port, *args, password=None):
    env = dict(os.environ)
    env.pop("REDISCLI_AUTH", None)
    if password:
        env["REDISCLI_AUTH"] = password  # the environment, not our own command line
    return subprocess.run(["redis-cli", "--no-auth-warning", "-h", "127.0.0.1", "-p", str(port),
                           *args], env=env, capture_output=True, text=True, timeout=10).stdout


def tiny_model(runner_bin, tmp):
    """A bert-tiny token-classification model with the demo vocabulary, as the runner
    exports it: the gated repo the mock Hub serves."""
    out = tmp / "seed"
    proc = subprocess.run([str(runner_bin), "--architecture", "bert-tiny", "--mode", "train",
                           "--epochs", "1", "--instances", "40", "--no-serve", "--redis", "off",
                           "--output", str(out), "--log-format", "json"],
                          env=base_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    model = out / "artefacts" / "bert-tiny" / "prime" / "model"
    return {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}


class Watcher:
    """While the job runs: the command lines of its processes, every endpoint's answers,
    the telemetry segment and Redis's contents, again and again, with the places each
    was read from; and the positive controls."""

    def __init__(self, proc, ports, redis_port):
        self.proc, self.ports, self.redis_port = proc, ports, redis_port
        self.found, self.seen = [], {"cmdline": set(), "environ": False, "redis": False,
                                     "endpoints": 0, "phases": set(), "checkpoint": None,
                                     "redis_auth": None, "shm": 0,
                                     "redis_environ": False, "answered": set()}
        self.paths = set()
        self.stop = threading.Event()
        self.errors = []
        # Processes often (a worker lives only as long as its run), the rest in turn.
        self.threads = [threading.Thread(target=self.loop, args=(steps, pause), daemon=True)
                        for steps, pause in (((self.processes,), 0.05),
                                             ((self.endpoints, self.control), 0.1),
                                             ((self.redis,), 0.2))]
        for t in self.threads:
            t.start()

    def check(self, where, data):
        self.found.extend(leaks(where, data))

    def processes(self):
        for pid in descendants(self.proc.pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            self.check(f"/proc/{pid}/cmdline ({cmdline[:60]!r})", cmdline)
            args = cmdline.rstrip(b"\0").split(b"\0")
            self.seen["cmdline"].add(b" ".join([args[0].rsplit(b"/", 1)[-1], *args[1:]]))
            if args[0].startswith(b"redis-server"):
                # It needs none of them, so it is given none (redis_server.c).
                try:
                    with open(f"/proc/{pid}/environ", "rb") as f:
                        self.check(f"/proc/{pid}/environ of redis-server", f.read())
                    self.seen["redis_environ"] = True
                except OSError:
                    pass
            if pid == self.proc.pid and not self.seen["environ"]:
                try:
                    with open(f"/proc/{pid}/environ", "rb") as f:
                        environ = f.read()
                    self.seen["environ"] = len(leaks("environ", environ)) == len(CANARIES)
                except OSError:
                    pass
        for shm in Path("/dev/shm").glob(f"runner-telemetry-{self.proc.pid}*"):
            try:
                data = shm.read_bytes()
            except OSError:
                continue
            self.seen["shm"] += 1
            self.check(str(shm), data)

    def endpoints(self):
        metrics, api, dashboard = self.ports
        paths = [(metrics, p) for p in ("/metrics", "/healthz", "/readyz")]
        for port in (api, dashboard):
            paths += [(port, f"/api/v1/{r}") for r in
                      ("status", "history", "nodes", "trials", "preflight", "gpus",
                       "logs?since=1&max=100000", "logs")]
        paths += [(dashboard, p) for p in
                  ("/", "/index.html", "/assets/dashboard.js", "/assets/dashboard.css",
                   "/assets/favicon.svg", "/assets/chart.umd.min.js")]
        self.paths = set(paths)
        for port, path in paths:
            try:
                status, headers, body = fetch(port, path)
            except OSError:
                continue
            self.seen["endpoints"] += 1
            self.seen["answered"].add((port, path))
            self.check(f":{port}{path}", headers.encode() + body)
            if path == "/api/v1/status" and status == 200:
                self.seen["phases"].add(json.loads(body).get("phase"))
        # An event stream for a moment: its first events (status, history from the start,
        # the log lines from the first), and what follows for half a second.
        for port in (api, dashboard):
            stream = read_stream(port, 0.5)
            if b"event: status" in stream:
                self.seen["answered"].add((port, "/api/v1/events"))
                self.paths.add((port, "/api/v1/events"))
            self.check(f":{port}/api/v1/events", stream)

    def redis(self):
        if self.seen["redis_auth"] is None:
            refused = redis_cli(self.redis_port, "PING")
            answered = redis_cli(self.redis_port, "PING", password=CANARIES["REDIS_PASSWORD"])
            # Decided once both reached the server (not while it starts or stops).
            if "PONG" in answered and ("NOAUTH" in refused or "PONG" in refused):
                self.seen["redis_auth"] = "NOAUTH" in refused
        dump = redis_cli(self.redis_port, "EVAL", REDIS_DUMP_LUA, "0",
                         password=CANARIES["REDIS_PASSWORD"])
        if dump.strip():
            self.seen["redis"] = True
            self.check("redis", dump)

    def control(self):
        """Once training: a checkpoint asked for with the token (202), and once with a
        wrong one (401), whose refusal is logged."""
        if self.seen["checkpoint"] is not None or not self.seen["phases"] & {"search", "prime"}:
            return
        api = self.ports[1]
        wrong, _, _ = fetch(api, "/api/v1/control/checkpoint", "POST",
                           {"Authorization": "Bearer not-the-token"})
        right, headers, body = fetch(api, "/api/v1/control/checkpoint", "POST",
                                    {"Authorization": f"Bearer {CANARIES['RUNNER_CONTROL_TOKEN']}"})
        self.check("the control answer", headers.encode() + body)
        self.seen["checkpoint"] = (wrong, right)

    def loop(self, steps, pause):
        while not self.stop.is_set() and self.proc.poll() is None:
            for step in steps:
                try:
                    step()
                except (OSError, ValueError, http.client.HTTPException,
                        subprocess.SubprocessError):
                    pass  # the job moved on (a process ended, a server stopped)
                except Exception as e:  # a bug here: the test must not pass without its checks
                    self.errors.append(repr(e))
                    return
            time.sleep(pause)

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


@pytest.fixture(scope="module")
def s3(moto):
    client = boto3.client("s3", endpoint_url=moto, region_name=REGION,
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    demo = ROOT / "data" / "demo"
    lines = (demo / "dataset.csv").read_text().splitlines()[:301]
    client.put_object(Bucket=BUCKET, Key="data/dataset.csv", Body=("\n".join(lines) + "\n").encode())
    for name in ("enumerator.json", "archetype.json", "vocab.txt"):
        client.put_object(Bucket=BUCKET, Key=f"data/{name}", Body=(demo / name).read_bytes())
    return client


def test_no_canary_leaves_the_runner(runner_bin, moto, s3, tmp_path):
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server / redis-cli are not installed")
    hub = MockHub(token=CANARIES["HF_TOKEN"])
    hub.add(MODEL, tiny_model(runner_bin, tmp_path), gated=True)
    out, work, cache = tmp_path / "out", tmp_path / "work", tmp_path / "hf"
    metrics, api, dashboard, redis_port = free_port(), free_port(), free_port(), free_port()
    env = base_env(**CANARIES, AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=moto,
                   AWS_EC2_METADATA_DISABLED="true", RUNNER_AWS_RETRY_BASE_MS=20,
                   RUNNER_WORK_DIR=work, RUNNER_REDIS_BIND="127.0.0.1",
                   HF_ENDPOINT=hub.endpoint, HF_HUB_CACHE=cache, HF_HOME=tmp_path / "hf-home")
    cmd = [str(runner_bin), "--architecture", "bert", "--model", MODEL,
           "--data", f"s3://{BUCKET}/data", "--output", str(out), "--trials", "2",
           "--epochs", "8", "--redis-port", str(redis_port), "--bind", "127.0.0.1",
           "--metrics-port", str(metrics), "--api-port", str(api),
           "--dashboard-port", str(dashboard), "--log-format", "json", "--verbose"]
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    started = time.time() - 1
    try:
        with open(stdout, "wb") as o, open(stderr, "wb") as e:
            proc = subprocess.Popen(cmd, env=env, stdout=o, stderr=e)
            watcher = Watcher(proc, (metrics, api, dashboard), redis_port)
            try:
                proc.wait(timeout=240)
            finally:
                watcher.finish()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    finally:
        hub.close()
    text = stdout.read_text(errors="replace")
    assert proc.returncode == 0, text[-3000:] + stderr.read_text()[-2000:]
    assert exit_line(text)["code"] == 0

    found = list(watcher.found)
    found += leaks("stdout", stdout.read_bytes()) + leaks("stderr", stderr.read_bytes())
    files = 0
    for root in (out, work, cache, tmp_path / "hf-home"):
        for path in (root.rglob("*") if root.exists() else []):
            if path.is_file():
                files += 1
                found += leaks(str(path.relative_to(tmp_path)), path.read_bytes())
    # Anything else the job wrote where temporary files go (other sessions' pytest
    # folders aside: ours is read above).
    for root in (Path("/tmp"), Path("/dev/shm")):
        for path in root.rglob("*"):
            try:
                if (path.is_file() and not path.is_symlink() and path.stat().st_mtime >= started
                        and path.stat().st_size < 64 << 20
                        and not str(path).startswith(("/tmp/pytest-of-", "/tmp/bash_jobs"))):
                    files += 1
                    found += leaks(str(path), path.read_bytes())
            except OSError:
                continue
    seen = watcher.seen
    print(f"\nread {files} files, {seen['endpoints']} endpoint answers over phases "
          f"{sorted(p for p in seen['phases'] if p)}, {seen['shm']} telemetry segment reads, "
          f"processes {sorted(seen['cmdline'])}; control {seen['checkpoint']}")
    assert not watcher.errors, watcher.errors
    assert not found, sorted(set(found))

    # The checks looked where the canaries were.
    assert seen["environ"], "the runner's environment did not hold every canary"
    assert any(c.startswith(b"redis-server") for c in seen["cmdline"]), seen["cmdline"]
    assert any(c.startswith(b"runner --worker") for c in seen["cmdline"]), seen["cmdline"]
    assert seen["redis_auth"] is True, "Redis did not require the canary password"
    assert seen["redis"], "Redis was never read"
    assert seen["redis_environ"], "redis-server's environment was never read"
    assert seen["checkpoint"] == (401, 202), seen["checkpoint"]
    assert seen["shm"] > 0
    missed = {(p, path) for p, path in watcher.paths if (p, path) not in seen["answered"]}
    missed |= {(p, "/api/v1/events") for p in (api, dashboard)} - seen["answered"]
    assert not missed, f"never answered: {sorted(missed)}"
    assert {"prime", "search"} & seen["phases"], seen["phases"]
    # The gated model came with the token, and the token went to the Hub only.
    auth = {r["auth"] for r in hub.requests if not r["cdn"]}
    assert auth == {f"Bearer {CANARIES['HF_TOKEN']}"}, auth
    assert all(not r["auth"] for r in hub.requests if r["cdn"])
    assert (out / "artefacts" / "bert" / "prime" / "model" / "model.safetensors").exists()
    assert list((out / "artefacts" / "bert").rglob("events.out.tfevents.*"))
    assert list((out / "artefacts" / "bert").rglob("checkpoint-*"))
