"""`--architecture roberta --model DIR` end to end: a RoBERTa model directory as
transformers writes it (config.json, model.safetensors, vocab.json, merges.txt), with a
byte-level BPE vocabulary trained here by `tokenizers` on the demo sentences (none can
be downloaded), fine-tuned by the whole pipeline on a slice of the demo data (test F1 0.93 from random
weights in ~5 s); the prime
model it exports loads in transformers and gives the logits `--mode predict` gives."""
import csv
import json

import pytest

from conftest import ROOT, assert_predict_matches_transformers, exit_line, run

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

pytestmark = pytest.mark.timeout(600)

DEMO = ROOT / "data" / "demo" / "dataset.csv"


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("roberta")
    with open(DEMO, newline="") as f:
        sentences = [row["sentence"] for row in csv.DictReader(f)]
    bpe = tokenizers.ByteLevelBPETokenizer()
    bpe.train_from_iterator(sentences, vocab_size=1200, min_frequency=2,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(out))
    tok = transformers.RobertaTokenizerFast(vocab_file=str(out / "vocab.json"),
                                            merges_file=str(out / "merges.txt"),
                                            add_prefix_space=True)
    tok.save_pretrained(out)
    torch.manual_seed(3)
    config = transformers.RobertaConfig(vocab_size=len(tok), hidden_size=64,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=128, max_position_embeddings=130,
                                        type_vocab_size=1, pad_token_id=1, num_labels=11)
    transformers.RobertaForTokenClassification(config).save_pretrained(out)
    return out


def test_roberta_pipeline_exports_a_model_transformers_loads(roberta_dir, runner_bin, tmp_path):
    out = tmp_path / "out"
    # The model directory holds random weights: the fine-tuning range a --model start gets
    # by default (2e-5 to 5e-5) would leave them random, so the search space is named.
    space = tmp_path / "hyperspace.json"
    space.write_text(json.dumps({"continuous": {"learning_rate": [1e-3, 1e-3]}}))
    proc = run(runner_bin, "--architecture", "roberta", "--model", roberta_dir, "--output", out,
               "--instances", 1000, "--trials", 1, "--epochs", 8, "--hyperspace", space,
               "--no-serve", "--redis", "off", "--log-format", "json", timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert exit_line(proc.stdout)["code"] == 0
    model_dir = out / "artefacts" / "roberta" / "prime" / "model"
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt",
                 "tokenizer_config.json", "special_tokens_map.json"):
        assert (model_dir / name).exists(), name
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "roberta"
    assert config["architectures"] == ["RobertaForTokenClassification"]
    score = json.loads((out / "artefacts" / "roberta" / "prime" / "metrics" / "testing" /
                        "score.json").read_text())
    # from random weights on 800 training sentences: it learns the demo's entities
    assert score["seqeval_overall_f1_score"] > 0.8, score["seqeval_overall_f1_score"]

    sentences = [["Kofi", "Annan", "arrived", "in", "Nairobi", "on", "Monday", "."],
                 ["The", "World", "Bank", "says", "Iraqi", "oil", "exports", "rose", "."],
                 ["Zyxwv", "qqq", "met", "Président", "Mugabe", "in", "the", "Balkans", "."]]
    tokenizer = assert_predict_matches_transformers(runner_bin, model_dir, sentences, tmp_path)
    assert tokenizer == "RobertaTokenizerFast"


def test_roberta_from_scratch_needs_a_bpe_vocabulary_beside_the_data(runner_bin, tmp_path):
    """Data of one's own with a WordPiece vocab.txt only: RoBERTa's tokenizer is not
    there, and the reason names the file and how to make one."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("dataset.csv", "enumerator.json", "archetype.json", "vocab.txt"):
        (data / name).write_bytes((ROOT / "data" / "demo" / name).read_bytes())
    proc = run(runner_bin, "--architecture", "roberta", "--data", data, "--output",
               tmp_path / "out", "--no-serve", "--redis", "off", "--log-format", "json")
    assert proc.returncode == 3, proc.stdout[-2000:]
    reason = exit_line(proc.stdout)["reason"]
    assert str(data / "vocab.json") in reason and "make_demo_bpe.py" in reason, reason


def test_roberta_pretrain_exports_a_masked_lm(roberta_dir, runner_bin, tmp_path):
    """--mode pretrain on RoBERTa: <mask> masking, the lm_head names, RobertaForMaskedLM."""
    out = tmp_path / "out"
    proc = run(runner_bin, "--mode", "pretrain", "--architecture", "roberta", "--model",
               roberta_dir, "--instances", 300, "--epochs", 2, "--learning-rate", "1e-3",
               "--output", out, "--no-serve", "--redis", "off", "--log-format", "json",
               timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    curve = json.loads((out / "artefacts/roberta/pretrain/curve.json").read_text())
    assert len(curve) == 2 and curve[1]["eval_loss"] < curve[0]["eval_loss"]
    model_dir = out / "artefacts/roberta/pretrain/model"
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["RobertaForMaskedLM"]
    model, info = transformers.AutoModelForMaskedLM.from_pretrained(model_dir,
                                                                    output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    model.eval()
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    enc = tok("The World Bank <mask> in Nairobi .", return_tensors="pt")
    assert tok.mask_token_id in enc["input_ids"][0].tolist()
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (1, enc["input_ids"].shape[1], config["vocab_size"])
