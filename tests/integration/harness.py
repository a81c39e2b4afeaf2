"""Shared fixtures, hooks and helpers for the black-box tests of the built `runner`
binary: tests/integration/conftest.py and tests/fault/conftest.py both re-export them.

RUNNER_BIN names the binary under test (scripts/test sets it to the release build);
RUNNER_ASAN_BIN the sanitizer build, for the bad-input tests that must not crash.
"""
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _binary(env_name, default):
    path = Path(os.environ.get(env_name, ROOT / default))
    if not path.exists():
        pytest.skip(f"{path} is not built (set {env_name})")
    return path


@pytest.fixture(scope="session")
def runner_bin():
    return _binary("RUNNER_BIN", "build/release/runner")


@pytest.fixture(scope="session")
def asan_bin():
    return _binary("RUNNER_ASAN_BIN", "build/asan/runner")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port():
    return free_port()


def base_env(**extra):
    """A minimal environment: no RUNNER_* or AWS_* leaking in from the caller."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RUNNER_", "AWS_", "REDIS_", "SFN_"))}
    # Some modules set HF_HUB_OFFLINE=1 in this process for transformers' own loads; a
    # runner that is to be offline is told so by its test (extra), never by the order
    # the modules ran in.
    env.pop("HF_HUB_OFFLINE", None)
    # Nor the caller's ~/.aws files: a test that wants them names its own.
    env["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/aws-credentials"
    env["AWS_CONFIG_FILE"] = "/nonexistent/aws-config"
    # Most tests train a few dozen sentences for an epoch or two to test plumbing (S3,
    # workers, resume, servers): by design such a model learns nothing, which would exit
    # 9 LEARNED_NOTHING. The tests of that check (test_pipeline_defaults.py) remove this.
    env["RUNNER_REQUIRE_LEARNING"] = "0"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(binary, *args, env=None, timeout=120, cwd=None):
    """Run the binary to completion; returns CompletedProcess with text output."""
    return subprocess.run([str(binary), *map(str, args)], env=env or base_env(),
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def exit_line(output):
    """The final {"event":"exit",...} JSON line of a run's output."""
    for line in reversed(output.strip().splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if obj.get("event") == "exit":
            return obj
    raise AssertionError(f"no exit line in output:\n{output[-2000:]}")


def events(output, name):
    """Every {"event": name, ...} JSON line of a run's output, in order."""
    found = []
    for line in output.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if obj.get("event") == name:
            found.append(obj)
    return found


@pytest.fixture(scope="module")
def moto():
    """moto_server (S3, Secrets Manager, Step Functions...) on a free loopback port, one
    per test module; yields its endpoint URL."""
    import sys
    import time
    import urllib.request
    port = free_port()
    exe = Path(sys.executable).parent / "moto_server"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "moto.server"]
    proc = subprocess.Popen(cmd + ["-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def assert_predict_matches_transformers(runner_bin, model_dir, sentences, tmp_path):
    """`runner --mode predict` on pre-split sentences against transformers' own
    AutoModelForTokenClassification + AutoTokenizer of the same directory: the logits of
    each word's first sub-token (atol 2e-4), and the tags their argmax names. The model
    must load with no missing or unexpected key. Returns the tokenizer's class name."""
    import numpy as np
    import torch
    import transformers

    inputs = tmp_path / "sentences.jsonl"
    inputs.write_text("".join(json.dumps({"tokens": s}) + "\n" for s in sentences))
    predictions = tmp_path / "predictions.jsonl"
    proc = run(runner_bin, "--mode", "predict", "--model", model_dir, "--input", inputs,
               "--output", predictions, "--no-serve", "--redis", "off", "--log-format", "json")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ours = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert len(ours) == len(sentences)

    model, info = transformers.AutoModelForTokenClassification.from_pretrained(
        model_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    model.eval()
    id2label = model.config.id2label
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
    for words, row in zip(sentences, ours):
        assert row["tokens"] == words
        enc = tokenizer(words, is_split_into_words=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**enc).logits[0].numpy()
        first = {}
        for position, word in enumerate(enc.word_ids()):
            if word is not None and word not in first:
                first[word] = position
        expected = np.stack([logits[first[w]] for w in range(len(words))])
        np.testing.assert_allclose(np.array(row["logits"]), expected, atol=2e-4, rtol=1e-4)
        assert row["tags"] == [id2label[int(i)] for i in expected.argmax(-1)]
        probs = torch.softmax(torch.tensor(expected), -1).max(-1).values.numpy()
        np.testing.assert_allclose(row["scores"], probs, atol=1e-5)
    return type(tokenizer).__name__


# The longer suite: tests marked `slow` (minutes each on the CPU: bert-small and a
# pretrained MiniLM learning the demo data) run only with --slow, e.g.
#   .venv/bin/python -m pytest -q tests/integration --slow -m slow
# They are deselected, not skipped, otherwise: a skip fails under RUNNER_TEST_STRICT.
def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the tests marked slow (the longer suite)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: minutes on the CPU; runs only with --slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


# Under scripts/test every tool is built and every peer installed, so a skip there is a
# failure in disguise (a missing build step, a job that no longer runs). Only skips for
# facts about the machine itself stay skips.
MACHINE_SKIPS = ("running as root", "this machine has GPUs", "the sandbox refuses unshare")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and os.environ.get("RUNNER_TEST_STRICT") == "1"):
        return
    reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
    if not any(allowed in reason for allowed in MACHINE_SKIPS):
        report.outcome = "failed"
        report.longrepr = f"skipped under RUNNER_TEST_STRICT=1: {reason}"


def demo_as_jsonl(tmp_path, rows=50):
    """The first `rows` demo sentences as JSONL tagging data ({"tokens", "tags"}) with the
    demo vocabulary, in tmp_path/jsonl; returns that folder."""
    import csv
    import shutil
    demo = ROOT / "data" / "demo"
    data = tmp_path / "jsonl"
    data.mkdir()
    shutil.copy(demo / "vocab.txt", data / "vocab.txt")
    with open(demo / "dataset.csv", newline="") as f:
        picked = list(csv.DictReader(f))[:rows]
    (data / "dataset.jsonl").write_text("".join(
        json.dumps({"tokens": r["sentence"].split(), "tags": r["tagstr"].split()}) + "\n"
        for r in picked))
    return data
