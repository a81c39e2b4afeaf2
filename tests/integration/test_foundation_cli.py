"""Black-box tests of the command line (DESIGN §2, §3): bad input exits 2 with one line,
precedence defaults < config < env < flags, --help/--version/--exit-codes."""
import json
import os
import subprocess

import pytest

from conftest import base_env, exit_line, run

# (argv, what the one-line error must name)
BAD_FLAGS = [
    (["--architecture", "gpt2"], "valid: bert, distil, electra, roberta, bert-tiny"),
    (["--mode", "serve"], "valid: pipeline, train, predict, embed, pretrain, check"),
    (["--backend", "tpu"], "valid: auto, cpu, cuda"),
    (["--bogus"], "--bogus"),
    (["--bogus"], "--architecture"),
    (["-x"], "-x"),
    (["--epochs"], "--epochs"),
    (["--epochs", "two"], "--epochs"),
    (["--epochs", "0"], "1..100000"),
    (["--train-batch-size", "-4"], "--train-batch-size"),
    (["--learning-rate", "fast"], "--learning-rate"),
    (["--learning-rate", "inf"], "--learning-rate"),
    (["--metrics-port", "65536"], "--metrics-port"),
    (["--api-port", "http"], "--api-port"),
    (["--min-shm", "lots"], "15gb"),
    (["--min-shm", "-1g"], "--min-shm"),
    (["--gpus", "-1"], "--gpus"),
    (["--gpus", "two"], "--gpus"),
    (["--seed", "x"], "--seed"),
    (["--log-format", "xml"], "json"),
    (["--output", ""], "--output"),
    (["--architecture", "a" * 200], "--architecture"),
    (["--data", "x" * 5000], "--data"),
    (["--check=yes"], "--check=yes"),
    (["extra-argument"], "extra-argument"),
    (["--architecture", "bert", "src/main.py"], "src/main.py"),
    # docker flags landing in a job's command
    (["--gpus", "all"], "resourceRequirements"),
    (["--gpus=device=0,1"], "resourceRequirements"),
    (["--shm-size=15gb"], "linuxParameters.sharedMemorySize"),
    (["--shm-size", "15gb"], "linuxParameters.sharedMemorySize"),
    (["-p", "6006:6006"], "port mappings"),
    (["-p6379:6379"], "port mappings"),
    (["--publish", "8265:8265"], "port mappings"),
]


def assert_usage_error(proc, needle):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr  # one line for a person
    assert lines[0].startswith("runner: ")
    assert needle in lines[0], lines[0]
    line = exit_line(proc.stdout)
    assert line["code"] == 2 and line["name"] == "USAGE"
    assert needle in line["reason"]


@pytest.mark.parametrize("argv,needle", BAD_FLAGS)
def test_bad_flag_exits_2_with_one_line(runner_bin, argv, needle):
    assert_usage_error(run(runner_bin, *argv, timeout=30), needle)


@pytest.mark.parametrize("argv,needle", BAD_FLAGS)
def test_bad_flag_under_asan(asan_bin, argv, needle):
    proc = run(asan_bin, *argv, timeout=60)
    assert "Sanitizer" not in proc.stderr
    assert_usage_error(proc, needle)


BAD_CONFIGS = [
    ('{"EPOCHS": 2, "MAX_LENGTH": ', "truncated"),
    ("", "truncated"),
    ('{"EPOCHS": 2,, }', "malformed"),
    ("{\n\"EPOCHS\": 2,\n  oops\n}", "line 3"),
    ('{"EPOCHS": 2}\ntrailing', "malformed"),
    ('["EPOCHS", 2]', "JSON object"),
    ('{"EPOCHS": "2"}', "'EPOCHS' must be an integer"),
    ('{"EPOCHS": 2.5}', "'EPOCHS' must be an integer"),
    ('{"TRAIN_BATCH_SIZE": 0}', "TRAIN_BATCH_SIZE"),
    ('{"LEARNING_RATE": "1e-5"}', "'LEARNING_RATE' must be a number"),
    ('{"pretrained_model_name": 7}', "'pretrained_model_name' must be a string"),
    ('{"architecture": "gpt2"}', "valid: bert"),
    ('{"serve": "no"}', "'serve' must be true or false"),
    ('{"min_shm": "lots"}', "min_shm"),
    ("\x00\xff\xfe garbage", "malformed"),
]


@pytest.mark.parametrize("text,needle", BAD_CONFIGS)
def test_bad_config_file(runner_bin, asan_bin, tmp_path, text, needle):
    path = tmp_path / "arguments.json"
    path.write_bytes(text.encode("latin-1"))
    for binary in (runner_bin, asan_bin):
        proc = run(binary, "--config", path, "--check", timeout=60)
        assert_usage_error(proc, needle)
        assert str(path) in proc.stderr or needle in proc.stderr


@pytest.mark.parametrize("make_path", ["missing", "directory", "unreadable"])
def test_unreadable_config_paths(runner_bin, tmp_path, make_path):
    path = tmp_path / "arguments.json"
    if make_path == "directory":
        path.mkdir()
    elif make_path == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("running as root: mode 000 does not stop reads")
        path.write_text("{}")
        path.chmod(0)
    proc = run(runner_bin, "--config", path, timeout=30)
    assert_usage_error(proc, str(path))


def test_bad_environment_value_names_the_variable(runner_bin):
    proc = run(runner_bin, "--check", env=base_env(RUNNER_EPOCHS="many"), timeout=30)
    assert_usage_error(proc, "RUNNER_EPOCHS")
    proc = run(runner_bin, env=base_env(RUNNER_CONFIG="/nonexistent/args.json"), timeout=30)
    assert_usage_error(proc, "/nonexistent/args.json")


def effective_config(runner_bin, *argv, env=None):
    proc = run(runner_bin, "--check", "--json", *argv, env=env, timeout=60)
    assert proc.returncode in (0, 5), proc.stderr
    return json.loads(proc.stdout.splitlines()[0])["config"]


def test_precedence_defaults_config_env_flags(runner_bin, tmp_path):
    config = tmp_path / "arguments.json"
    config.write_text(json.dumps({"EPOCHS": 3, "TRAIN_BATCH_SIZE": 32, "LEARNING_RATE": 5e-5,
                                  "architecture": "electra", "N_TRIALS": 9}))
    assert effective_config(runner_bin)["epochs"] == 2  # built-in default
    assert effective_config(runner_bin)["architecture"] == "distil"
    from_file = effective_config(runner_bin, "--config", config)
    assert (from_file["epochs"], from_file["train-batch-size"], from_file["trials"]) == (3, 32, 9)
    assert from_file["architecture"] == "electra"
    assert from_file["learning-rate"] == pytest.approx(5e-5)
    env = base_env(RUNNER_EPOCHS=4, RUNNER_ARCHITECTURE="bert-tiny")
    from_env = effective_config(runner_bin, "--config", config, env=env)
    assert (from_env["epochs"], from_env["architecture"], from_env["train-batch-size"]) == (4, "bert-tiny", 32)
    from_flag = effective_config(runner_bin, "--epochs", "5", "--config", config, env=env)
    assert (from_flag["epochs"], from_flag["architecture"]) == (5, "bert-tiny")
    # RUNNER_CONFIG names the file when no --config is given
    via_env = effective_config(runner_bin, env=base_env(RUNNER_CONFIG=config))
    assert via_env["epochs"] == 3


def test_unknown_config_key_is_a_warning(runner_bin, tmp_path):
    config = tmp_path / "arguments.json"
    config.write_text('{"EPOCHS": 3, "NUM_GPUS_PER_TRIAL": 1}')
    proc = run(runner_bin, "--config", config, "--check", "--json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    warnings = [json.loads(l) for l in proc.stderr.splitlines() if "config_warning" in l]
    assert len(warnings) == 1 and "NUM_GPUS_PER_TRIAL" in warnings[0]["msg"]


def test_original_command_is_accepted(runner_bin):
    for head in ("src/main.py", "/app/src/main.py", "main.py"):
        proc = run(runner_bin, head, "--architecture", "bert", "--check", "--json", timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout.splitlines()[0])["config"]["architecture"] == "bert"


def test_help_is_grouped_with_examples(runner_bin):
    proc = run(runner_bin, "--help", timeout=30)
    assert proc.returncode == 0
    for heading in ("What to run:", "Training", "Resources:", "Servers:", "Logging:",
                    "Actions:", "Examples:", "Exit codes:"):
        assert heading in proc.stdout
    assert "--architecture NAME" in proc.stdout and "--exit-codes" in proc.stdout
    assert proc.stderr == ""  # the help alone, no log or exit line (as curl, torchrun)
    assert run(runner_bin, "-h", timeout=30).stdout == proc.stdout


def merged_output(runner_bin, *args):
    """stdout and stderr through one pipe, as `runner ... 2>&1 | head` sees them."""
    proc = subprocess.run([str(runner_bin), *args], env=base_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)
    return proc.returncode, proc.stdout


@pytest.mark.parametrize("flag,first,last", [
    ("--help", "Usage: runner", "docs/cli.md describes every option."),
    ("--version", "runner 0.", "CUDA"),
])
def test_help_and_version_print_whole_text_and_no_log_line(runner_bin, flag, first, last):
    rc, out = merged_output(runner_bin, flag)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].startswith(first) and last in lines[-1], out[-500:]
    assert not any(line.startswith("{") for line in lines), out


def test_help_to_a_full_stdout_is_an_output_error(runner_bin):
    with open("/dev/full", "w") as full:
        proc = subprocess.run([str(runner_bin), "--help"], env=base_env(), stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=30)
    assert proc.returncode == 4
    assert proc.stderr.strip().splitlines() == ["runner: cannot write to standard output: "
                                                "No space left on device"]


def test_report_on_stdout_comes_before_the_exit_line_through_one_pipe(runner_bin):
    # --check prints its report on stdout (buffered: a pipe) and logs the exit line on
    # stderr: merged, the report must still come first and the exit line last.
    rc, out = merged_output(runner_bin, "--check", "--json")
    assert rc == 0, out
    lines = out.strip().splitlines()
    assert "problems" in json.loads(lines[0]), out[:500]
    assert json.loads(lines[-1])["event"] == "exit"


def test_version(runner_bin):
    proc = run(runner_bin, "--version", timeout=30)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("runner 0.")
    assert lines[1].startswith("commit ") and len(lines[1]) > 10
    assert lines[2].startswith("build ")
    assert "CUDA" in proc.stdout


DESIGN_TABLE = [
    (0, "OK", "EXIT"), (1, "INTERNAL", "EXIT"), (2, "USAGE", "EXIT"), (3, "BAD_INPUT", "EXIT"),
    (4, "OUTPUT", "EXIT"), (5, "RESOURCES", "EXIT"), (6, "GPU_OOM", "EXIT"),
    (7, "DIVERGED", "EXIT"), (9, "LEARNED_NOTHING", "EXIT"), (80, "INTERRUPTED", "RETRY"), (81, "GPU_FAULT", "RETRY"),
    (82, "COORDINATION", "RETRY"), (83, "PEER_LOST", "RETRY"), (84, "REMOTE_IO", "RETRY"),
]


def test_exit_codes_json_matches_design(runner_bin):
    proc = run(runner_bin, "--exit-codes", "--json", timeout=30)
    assert proc.returncode == 0
    table = json.loads(proc.stdout)  # stdout is exactly the table
    assert [(r["code"], r["name"], r["batch"]) for r in table] == DESIGN_TABLE
    assert all(r["meaning"] for r in table)
    text = run(runner_bin, "--exit-codes", timeout=30).stdout
    for code, name, batch in DESIGN_TABLE:
        assert any(l.split()[:3] == [str(code), name, batch] for l in text.splitlines())


def test_empty_environment(runner_bin, asan_bin, tmp_path):
    for binary in (runner_bin, asan_bin):
        proc = subprocess.run([str(binary), "--check", "--json"], env={}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout.splitlines()[0])
        assert report["ok"] is True and report["batch"]["status"] == "skip"
        proc = subprocess.run([str(binary), "--epochs", "x"], env={}, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_docs_describe_every_flag(runner_bin):
    """docs/cli.md stays true to the code: every flag of --help is documented."""
    import re
    from conftest import ROOT
    docs = (ROOT / "docs" / "cli.md").read_text()
    flags = set(re.findall(r"--[a-z][a-z0-9-]+", run(runner_bin, "--help", timeout=30).stdout))
    missing = sorted(f for f in flags if f not in docs)
    assert not missing, f"docs/cli.md does not mention {missing}"
    assert len(flags) > 40
