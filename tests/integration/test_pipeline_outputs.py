"""The default job end to end on a slice of the demo data: the original's output layout,
reports equal to scikit-learn's and seqeval's on the same predictions, and a prime model
that transformers loads and that gives the logits `runner --mode predict` gives."""
import csv
import json

import pytest

from conftest import ROOT, assert_predict_matches_transformers, run

pytestmark = pytest.mark.timeout(600)

DEMO = ROOT / "data" / "demo"
INSTANCES = 400


@pytest.fixture(scope="module")
def pipeline(runner_bin, tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    proc = run(runner_bin, "--architecture", "bert", "--output", out, "--instances", INSTANCES,
               "--trials", 2, "--epochs", 2, "--no-serve", "--redis", "off",
               "--log-format", "json", timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out / "artefacts" / "bert", proc.stdout + proc.stderr


def read_split(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_split_is_80_15_5_of_the_first_instances(pipeline):
    art, _ = pipeline
    parts = {name: read_split(art / "data" / f"{name}.csv")
             for name in ("training", "validating", "testing")}
    assert [len(parts[n]) for n in ("training", "validating", "testing")] == [320, 60, 20]
    source = read_split(DEMO / "dataset.csv")[:INSTANCES]
    by_id = {row["sentence_identifier"]: row for row in source}
    seen = [row["sentence_identifier"] for rows in parts.values() for row in rows]
    assert sorted(seen, key=int) == sorted(by_id, key=int)  # a partition, nothing lost
    for rows in parts.values():
        for row in rows:
            assert row == by_id[row["sentence_identifier"]]  # same columns, same text
    assert seen[:20] != [str(i) for i in range(20)]  # shuffled
    enumerator = json.loads((art / "data" / "enumerator.json").read_text())
    assert enumerator == json.loads((DEMO / "enumerator.json").read_text())


def test_search_leaves_one_folder_per_trial_and_the_best(pipeline):
    art, log = pipeline
    hp = art / "hyperparameters"
    for trial in ("trial-0", "trial-1"):
        settings = json.loads((hp / trial / "settings.json").read_text())
        assert 5e-4 <= settings["learning_rate"] <= 5e-3  # data/demo/hyperspace.json
        assert settings["per_device_train_batch_size"] in (16, 32)
        curve = json.loads((hp / trial / "curve.json").read_text())
        assert 1 <= len(curve) <= 2 and all("eval_loss" in point for point in curve)
    best = json.loads((hp / "best.json").read_text())
    results = [json.loads((hp / t / "result.json").read_text()) for t in ("trial-0", "trial-1")]
    assert best["best_eval_loss"] == min(r["best_eval_loss"] for r in results)
    assert '"event":"search_done"' in log


def test_reports_equal_sklearn_and_seqeval(pipeline):
    from seqeval.metrics import accuracy_score, f1_score
    from seqeval.metrics import classification_report as seqeval_report
    from sklearn.metrics import classification_report as sklearn_report
    from sklearn.metrics import multilabel_confusion_matrix

    art, _ = pipeline
    labels = list(json.loads((art / "data" / "enumerator.json").read_text()))
    for split, count in (("validating", 60), ("testing", 20)):
        d = art / "prime" / "metrics" / split
        rows = [json.loads(line) for line in (d / "predictions.jsonl").read_text().splitlines()]
        assert len(rows) == count
        truth = [r["tags"] for r in rows]
        pred = [r["predicted"] for r in rows]
        flat_truth = [t for s in truth for t in s]
        flat_pred = [t for s in pred for t in s]
        assert (d / "fine.txt").read_text() == sklearn_report(flat_truth, flat_pred,
                                                               zero_division=0)
        assert (d / "coarse.txt").read_text() == seqeval_report(truth, pred, zero_division=0)
        score = json.loads((d / "score.json").read_text())
        assert score["seqeval_overall_accuracy_score"] == pytest.approx(
            accuracy_score(truth, pred), abs=1e-12)
        assert score["seqeval_overall_f1_score"] == pytest.approx(f1_score(truth, pred), abs=1e-12)
        fundamental = json.loads((d / "fundamental.json").read_text())
        matrices = multilabel_confusion_matrix(flat_truth, flat_pred, labels=labels)
        for label, m in zip(labels, matrices):
            (tn, fp), (fn, tp) = m
            assert fundamental[label] == {"tn": tn, "fp": fp, "fn": fn, "tp": tp}, label
    # The demo data is learnable: a tiny model already finds most entities.
    assert json.loads((art / "prime/metrics/testing/score.json").read_text())[
        "seqeval_overall_f1_score"] > 0.5


def test_prime_model_loads_in_transformers_and_matches_predict(pipeline, runner_bin, tmp_path):
    art, _ = pipeline
    model_dir = art / "prime" / "model"
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
                 "special_tokens_map.json"):
        assert (model_dir / name).exists(), name
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "bert"
    assert config["id2label"]["0"] == "O" and config["label2id"]["B-geo"] == 1

    sentences = [["Kofi", "Annan", "arrived", "in", "Nairobi", "on", "Monday", "."],
                 ["The", "World", "Bank", "says", "Iraqi", "oil", "exports", "rose", "."],
                 ["Zyxwv", "qqq", "met", "President", "Mugabe", "in", "the", "Balkans", "."]]
    tokenizer = assert_predict_matches_transformers(runner_bin, model_dir, sentences, tmp_path)
    assert tokenizer == "BertTokenizerFast"


def test_prime_checkpoints_respect_save_total_limit(pipeline):
    art, _ = pipeline
    checkpoints = sorted((art / "prime").glob("checkpoint-*"))
    assert 1 <= len(checkpoints) <= 2  # save_total_limit 2 (the best is kept among them)
    for ck in checkpoints:
        manifest = json.loads((ck / "manifest.json").read_text())
        assert set(manifest["files"]) == {"state.bin", "model.safetensors", "trainer_state.json"}
