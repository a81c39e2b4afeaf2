"""Random command lines and configuration files against the sanitizer build: every one
ends with a table code, one error line for usage errors, and no sanitizer report."""
import json
import random

from conftest import base_env, exit_line, run

VALUES = ["", "0", "1", "-1", "2", "65535", "65536", "1e309", "nan", "-0", "0x10", "1.5",
          "auto", "all", "bert", "distil", "bert-tiny", "json", "text", "%s%n%x", "é€",
          "15gb", "512m", "-1g", "99999999999999999999", " 3", "3 ", "a" * 300, "s3://",
          "s3://bucket/key", "/dev/null", "/nonexistent/x", "true", "false", "--", "="]
FLAGS = ["--architecture", "--mode", "--backend", "--gpus", "--workers", "--threads",
         "--epochs", "--learning-rate", "--max-length", "--train-batch-size", "--min-shm",
         "--metrics-port", "--seed", "--log-format", "--redis", "--output", "--dropout",
         "--instances", "--warmup-ratio", "--bind", "--shm-size", "-p", "--no-serve",
         "--verbose", "--bogus", "-z"]
JSON_VALUES = [0, -1, 1.5, 1e300, "", "x", "15gb", None, True, [], {}, "bert", 16, 2e-5]
JSON_KEYS = ["EPOCHS", "MAX_LENGTH", "TRAIN_BATCH_SIZE", "LEARNING_RATE", "N_TRIALS",
             "N_INSTANCES", "save_total_limit", "pretrained_model_name", "architecture",
             "min_shm", "gpus", "serve", "unknown_key"]
ALLOWED = {0, 2, 4, 5, 81, 84}


def check_run(binary, argv, env):
    proc = run(binary, "--check", "--json", *argv, env=env, timeout=60)
    assert "Sanitizer" not in proc.stderr and "runtime error" not in proc.stderr, (argv, proc.stderr)
    assert proc.returncode in ALLOWED, (argv, proc.returncode, proc.stderr[-2000:])
    assert exit_line(proc.stdout + "\n" + proc.stderr)["code"] == proc.returncode
    if proc.returncode == 2:
        errors = [l for l in proc.stderr.splitlines() if not l.startswith('{"ts"')]
        assert len(errors) == 1 and errors[0].startswith("runner: "), (argv, proc.stderr)


def test_random_command_lines(asan_bin, tmp_path):
    rng = random.Random(20261125)
    env = base_env(RUNNER_SHM_PATH=tmp_path, AWS_EC2_METADATA_DISABLED="true",
                   AWS_ENDPOINT_URL="http://127.0.0.1:1", RUNNER_AWS_MAX_ATTEMPTS="1",
                   AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="fuzz-secret")
    for _ in range(60):
        argv = []
        for _ in range(rng.randint(1, 4)):
            flag = rng.choice(FLAGS)
            argv.append(flag)
            if flag not in ("--no-serve", "--verbose"):
                argv.append(rng.choice(VALUES))
        check_run(asan_bin, argv, env)


def test_random_config_files(asan_bin, tmp_path):
    rng = random.Random(7)
    env = base_env(RUNNER_SHM_PATH=tmp_path)
    path = tmp_path / "arguments.json"
    for i in range(40):
        doc = {rng.choice(JSON_KEYS): rng.choice(JSON_VALUES) for _ in range(rng.randint(1, 4))}
        text = json.dumps(doc)
        if i % 4 == 3:
            text = text[: rng.randint(0, len(text))]  # truncated
        path.write_text(text)
        check_run(asan_bin, ["--config", str(path)], env)
