"""Data the job reads: malformed rows are reported as file:line and skipped up to
--max-bad-rows, beyond which the job exits 3; JSONL tagging data is read too."""
import csv
import json
import shutil

import pytest

from conftest import ROOT, demo_as_jsonl, exit_line, run

pytestmark = pytest.mark.timeout(300)

DEMO = ROOT / "data" / "demo"
FAST = ["--architecture", "bert-tiny", "--trials", 0, "--epochs", 1, "--no-serve",
        "--redis", "off", "--log-format", "json"]


def demo_copy(tmp_path, rows):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("enumerator.json", "archetype.json", "vocab.txt"):
        shutil.copy(DEMO / name, data / name)
    lines = (DEMO / "dataset.csv").read_text().splitlines()[: rows + 1]
    return data, lines


def test_malformed_rows_beyond_the_fraction_exit_3_naming_file_and_line(runner_bin, tmp_path):
    data, lines = demo_copy(tmp_path, 40)
    lines[5] = '4,"unterminated quote,O O,0 0'     # line 6
    lines[9] = "8,two words,O,0"                   # line 10: tags do not match words
    (data / "dataset.csv").write_text("\n".join(lines) + "\n")
    proc = run(runner_bin, *FAST, "--data", data, "--output", tmp_path / "out")
    assert proc.returncode == 3, proc.stdout[-2000:]
    line = exit_line(proc.stdout)
    assert line["name"] == "BAD_INPUT" and "max_bad_rows" in line["reason"]
    warnings = [json.loads(l)["msg"] for l in proc.stdout.splitlines() if "data_bad_row\"" in l]
    assert any("dataset.csv:10: 2 words but 1 tags" in w for w in warnings), warnings
    # the unterminated quote swallows the rest of the file into one field: reported too
    assert any("dataset.csv:6:" in w for w in warnings), warnings


def test_malformed_rows_within_the_fraction_are_skipped(runner_bin, tmp_path):
    data, lines = demo_copy(tmp_path, 60)
    lines[9] = "8,two words,O,0"
    lines[20] = "19,Paris,B-city,1"
    (data / "dataset.csv").write_text("\n".join(lines) + "\n")
    proc = run(runner_bin, *FAST, "--data", data, "--output", tmp_path / "out",
               "--max-bad-rows", 0.05)
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "unknown tag \\\"B-city\\\"" in proc.stdout
    loaded = [json.loads(l) for l in proc.stdout.splitlines() if '"event":"data_loaded"' in l]
    assert "58 sentences" in loaded[0]["msg"] and "2 malformed rows skipped" in loaded[0]["msg"]


def test_jsonl_tagging_data(runner_bin, tmp_path):
    data = demo_as_jsonl(tmp_path)
    out = tmp_path / "out"
    proc = run(runner_bin, *FAST, "--data", data, "--output", out)
    assert proc.returncode == 0, proc.stdout[-2000:]
    enumerator = json.loads((out / "artefacts/bert-tiny/data/enumerator.json").read_text())
    assert list(enumerator) == sorted(enumerator)  # labels from the data, sorted
    assert (out / "artefacts/bert-tiny/prime/metrics/testing/fine.txt").exists()


def test_jsonl_tokens_with_whitespace_are_malformed_rows(runner_bin, tmp_path):
    # "New York" as one token would be written to training.csv as two words, one tag.
    data = tmp_path / "jsonl"
    data.mkdir()
    shutil.copy(DEMO / "vocab.txt", data / "vocab.txt")
    with open(DEMO / "dataset.csv", newline="") as f:
        rows = [{"tokens": r["sentence"].split(), "tags": r["tagstr"].split()}
                for r in list(csv.DictReader(f))[:40]]
    rows[2] = {"tokens": ["She", "flew", "to", "New York"], "tags": ["O", "O", "O", "B-geo"]}
    # Rejected after its first tag was seen: that tag must not become a label.
    rows[5] = {"tokens": ["Rome", ""], "tags": ["B-city", "O"]}
    (data / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    proc = run(runner_bin, *FAST, "--data", data, "--output", out, "--max-bad-rows", 0.1)
    assert proc.returncode == 0, proc.stdout[-2000:]
    warnings = [json.loads(l)["msg"] for l in proc.stdout.splitlines() if "data_bad_row\"" in l]
    assert any("dataset.jsonl:3:" in w and "whitespace" in w for w in warnings), warnings
    assert any("dataset.jsonl:6:" in w for w in warnings), warnings
    enumerator = json.loads((out / "artefacts/bert-tiny/data/enumerator.json").read_text())
    assert "B-city" not in enumerator
    splits = out / "artefacts/bert-tiny/data"
    for name in ("training", "validating", "testing"):
        with open(splits / f"{name}.csv", newline="") as f:
            for r in csv.DictReader(f):
                assert len(r["sentence"].split()) == len(r["tagstr"].split()), r


def test_missing_data_is_bad_input(runner_bin, tmp_path):
    proc = run(runner_bin, *FAST, "--data", tmp_path / "nothing", "--output", tmp_path / "out")
    assert proc.returncode == 3
    assert "nothing" in exit_line(proc.stdout)["reason"]
