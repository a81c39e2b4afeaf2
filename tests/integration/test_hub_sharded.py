"""Sharded safetensors checkpoints from the Hub: transformers' save_pretrained of the
MiniLM checkpoint the hub tests use, cut into 20 MB shards (model.safetensors.index.json
and four model-0000N-of-00004.safetensors), served by the mock Hub.

- the runner fetches the index and every shard it names into huggingface_hub's cache
  layout (blobs by sha256, relative snapshot links), which huggingface_hub's
  snapshot_download and transformers' from_pretrained read offline;
- the runner's embeddings and trained weights from the sharded checkpoint equal, bit for
  bit, those from the single-file one (the tensors are the same);
- an index naming a shard the repo lacks exits 3 naming the shard; a local sharded
  folder with a shard missing or mis-shaped exits 3 naming the shard file and a tensor.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import exit_line, run
from test_hub import FILES, MODEL_DIR, REPO, hub_env, minilm_files, output, prefetch, repo_folder

sys.path.insert(0, str(Path(__file__).parent))
from hub_mock import MockHub  # noqa: E402

np = pytest.importorskip("numpy")
transformers = pytest.importorskip("transformers")
from safetensors.numpy import load_file, save_file  # noqa: E402

SHARDED = "acme/minilm-sharded"
MISSING = "acme/minilm-missing-shard"
INDEX = "model.safetensors.index.json"
SENTENCES = ["A man is eating food.", "Angela Merkel visited Paris.", "Hello, World!",
             "Batch retries exit codes in the 80s, twice."]


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory):
    """MiniLM saved by transformers in 20 MB shards, beside the original tokenizer."""
    out = tmp_path_factory.mktemp("sharded")
    model = transformers.AutoModel.from_pretrained(str(MODEL_DIR))
    model.save_pretrained(str(out), max_shard_size="20MB", safe_serialization=True)
    assert not (out / "model.safetensors").exists()
    for name in FILES:
        if name != "model.safetensors":
            shutil.copy(MODEL_DIR / name, out / name)  # config.json too: the same as the repo's
    return out


def shard_names(folder):
    index = json.loads((folder / INDEX).read_text())
    return sorted(set(index["weight_map"].values()))


@pytest.fixture(scope="module")
def hub(shard_dir):
    mock = MockHub()
    mock.add(REPO, minilm_files())
    files = {p.name: p.read_bytes() for p in shard_dir.iterdir()}
    mock.add(SHARDED, files)
    shards = shard_names(shard_dir)
    assert len(shards) >= 3, shards
    mock.add(MISSING, {k: v for k, v in files.items() if k != shards[-1]})
    yield mock
    mock.close()


def embed(runner_bin, hub, cache, model, tmp_path, name):
    src = tmp_path / "in.txt"
    src.write_text("".join(s + "\n" for s in SENTENCES))
    out = tmp_path / f"{name}.npy"
    proc = run(runner_bin, "--mode", "embed", "--architecture", "bert", "--model", model,
               "--input", src, "--output", out, "--no-serve", "--redis", "off",
               "--log-format", "json", env=hub_env(hub, cache), timeout=300)
    assert proc.returncode == 0, output(proc)[-3000:]
    return out.read_bytes()


def train(runner_bin, hub, cache, model, tmp_path, name):
    out = tmp_path / name
    proc = run(runner_bin, "--mode", "train", "--architecture", "bert", "--model", model,
               "--trials", 0, "--epochs", 1, "--instances", 60, "--max-length", 32,
               "--threads", 1, "--no-serve", "--redis", "off", "--log-format", "json",
               "--output", out, env=hub_env(hub, cache), timeout=600)
    assert proc.returncode == 0, output(proc)[-3000:]
    return load_file(str(out / "artefacts" / "bert" / "prime" / "model" / "model.safetensors"))


def test_sharded_checkpoint_is_cached_read_back_and_equals_the_single_file(
        runner_bin, hub, shard_dir, tmp_path):
    cache = tmp_path / "cache"
    proc = prefetch(runner_bin, hub, cache, SHARDED)
    assert proc.returncode == 0, output(proc)[-3000:]
    lines = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
    assert any(l["event"] == "hub_shards" for l in lines), proc.stdout[-3000:]
    folder = repo_folder(cache, SHARDED)
    commit = (folder / "refs" / "main").read_text()
    snap = folder / "snapshots" / commit
    shards = shard_names(shard_dir)
    for name in [INDEX, *shards]:
        link = snap / name
        assert link.is_symlink() and os.readlink(link).startswith("../../blobs/"), name
        assert link.read_bytes() == (shard_dir / name).read_bytes(), name
    for name in shards:  # LFS files: blobs named by their sha256, checked
        sha = hashlib.sha256((shard_dir / name).read_bytes()).hexdigest()
        assert os.readlink(snap / name) == f"../../blobs/{sha}"
    assert not (snap / "model.safetensors").exists()
    assert not list(folder.glob("blobs/*.incomplete"))
    bodies = [r["path"] for r in hub.cdn_requests() if r["method"] == "GET"]
    assert len(bodies) == len(shards), bodies  # each shard downloaded once

    # huggingface_hub and transformers, offline, on the runner's cache
    code = f"""
import torch, transformers
from huggingface_hub import snapshot_download
print(snapshot_download({SHARDED!r}, cache_dir={str(cache)!r}, local_files_only=True))
model = transformers.AutoModel.from_pretrained({SHARDED!r}, cache_dir={str(cache)!r},
                                               local_files_only=True)
ref = transformers.AutoModel.from_pretrained({str(MODEL_DIR)!r})
a, b = model.state_dict(), ref.state_dict()
print(a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a))
"""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache))
    env.pop("HF_ENDPOINT", None)
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert got.returncode == 0, got.stderr[-3000:]
    snapshot, same = got.stdout.split()[-2:]
    assert Path(snapshot) == snap and same == "True", got.stdout

    # the runner: embeddings and a training run, sharded against single-file, bit for bit
    assert embed(runner_bin, hub, cache, SHARDED, tmp_path, "sharded") == \
        embed(runner_bin, hub, cache, REPO, tmp_path, "single")
    ours, theirs = (train(runner_bin, hub, cache, m, tmp_path, n)
                    for m, n in ((SHARDED, "t_sharded"), (REPO, "t_single")))
    assert ours.keys() == theirs.keys()
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)

    # and again with HF_HUB_OFFLINE=1: the shards resolve through the snapshot
    hub.requests.clear()
    proc = prefetch(runner_bin, hub, cache, SHARDED, HF_HUB_OFFLINE=1,
                    HF_ENDPOINT="http://127.0.0.1:1")
    assert proc.returncode == 0, output(proc)[-3000:]
    assert hub.requests == []


def test_index_naming_a_missing_shard_exits_3(runner_bin, hub, shard_dir, tmp_path):
    cache = tmp_path / "cache"
    proc = prefetch(runner_bin, hub, cache, MISSING)
    assert proc.returncode == 3, output(proc)[-3000:]
    reason = exit_line(proc.stdout)["reason"]
    missing = shard_names(shard_dir)[-1]
    assert missing in reason and INDEX in reason and "not found" in reason, reason
    assert not list(repo_folder(cache, MISSING).glob(f"snapshots/*/{missing}"))


def local_copy(shard_dir, tmp_path):
    d = tmp_path / "model"
    shutil.copytree(shard_dir, d)
    return d


def embed_local(runner_bin, folder, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Hello, World!\n")
    return run(runner_bin, "--mode", "embed", "--architecture", "bert", "--model", folder,
               "--input", src, "--output", tmp_path / "out.npy", "--no-serve", "--redis", "off",
               "--log-format", "json", timeout=300)


def test_local_sharded_folder_with_a_bad_shard_exits_3_naming_it(runner_bin, shard_dir,
                                                                 tmp_path):
    index = json.loads((shard_dir / INDEX).read_text())["weight_map"]
    missing = shard_names(shard_dir)[-1]
    holds = sorted(k for k, v in index.items() if v == missing)

    gone = local_copy(shard_dir, tmp_path / "gone")
    (gone / missing).unlink()
    # mis-shaped: one tensor of a shard one column short
    bent = local_copy(shard_dir, tmp_path / "bent")
    victim = "encoder.layer.0.attention.self.query.weight"
    shard = index[victim]
    tensors = load_file(str(bent / shard))
    tensors[victim] = np.ascontiguousarray(tensors[victim][:, :-1])
    save_file(tensors, str(bent / shard), metadata={"format": "pt"})

    proc = embed_local(runner_bin, gone, tmp_path / "gone")
    assert proc.returncode == 3, output(proc)[-3000:]
    reason = exit_line(proc.stdout)["reason"]
    assert missing in reason and INDEX in reason and "No such file" in reason, reason
    assert any(f"'{t}'" in reason for t in holds), reason

    proc = embed_local(runner_bin, bent, tmp_path / "bent")
    assert proc.returncode == 3, output(proc)[-3000:]
    reason = exit_line(proc.stdout)["reason"]
    assert shard in reason and victim in reason and "[384, 383]" in reason, reason
