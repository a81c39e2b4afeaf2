"""runner/cloud as the runner binary uses it: ECS labels on log lines, Step Functions
callbacks at exit, a spot notice stopping the job with 80, locations from a Secrets
Manager secret, and an s3:// --config. moto plays S3 and Secrets Manager; the local
responder plays IMDS, the ECS metadata endpoint and Step Functions (to record what
was sent)."""
import json
import subprocess
import time

import pytest

from conftest import ROOT, base_env, exit_line, run
from imds_responder import Responder
from test_aws_moto import REGION, SECRET_KEY, client

DEMO = ROOT / "data" / "demo"
QUICK = ["--architecture", "bert-tiny", "--no-serve", "--redis", "off", "--workers", "1",
         "--threads", "1"]


@pytest.fixture
def responder():
    with Responder() as r:
        yield r


def env_for(moto_url, responder, tmp_path, **extra):  # noqa: F811
    return base_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                    AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=moto_url,
                    AWS_ENDPOINT_URL_SFN=responder.url, AWS_EC2_METADATA_DISABLED="true",
                    RUNNER_AWS_RETRY_BASE_MS="20", RUNNER_WORK_DIR=tmp_path / "work",
                    TMPDIR=tmp_path, **extra)


@pytest.fixture
def bucket(moto, request):  # noqa: F811
    name = "runner-wire-" + request.node.name.lower().replace("_", "-")[5:33].strip("-")
    client(moto, "s3").create_bucket(Bucket=name,
                                     CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


def sfn_calls(responder, action):
    return [json.loads(r["body"]) for r in responder.recorded("POST", "/")
            if r["headers"].get("x-amz-target") == f"AWSStepFunctions.{action}"]


def test_ecs_labels_on_log_lines(runner_bin, moto, responder, tmp_path):  # noqa: F811
    env = env_for(moto, responder, tmp_path,
                  ECS_CONTAINER_METADATA_URI_V4=responder.url + "/v4/abc")
    r = run(runner_bin, "--check", "--json", env=env, cwd=tmp_path)
    line = exit_line(r.stderr)
    assert line["task_arn"].endswith("task/batch-ce/0123456789abcdef")
    assert line["availability_zone"] == "eu-west-1b"
    assert line["log_stream"] == "runner/default/0123456789abcdef"


def test_sfn_failure_at_exit_names_the_code(runner_bin, moto, responder, bucket, tmp_path):  # noqa: F811
    env = env_for(moto, responder, tmp_path, SFN_TASK_TOKEN="wire-token-1")
    r = run(runner_bin, *QUICK, "--mode", "train", "--data", f"s3://{bucket}/absent.csv",
            "--output", tmp_path / "out", env=env, cwd=tmp_path)
    assert r.returncode == 3, exit_line(r.stdout + r.stderr)
    (failure,) = sfn_calls(responder, "SendTaskFailure")
    assert failure["taskToken"] == "wire-token-1"
    assert failure["error"] == "BAD_INPUT"
    assert "absent.csv" in failure["cause"]
    assert not sfn_calls(responder, "SendTaskSuccess")
    assert "wire-token-1" not in r.stdout + r.stderr  # redacted from the logs

    # A usage error is reported too: the state machine must not wait for a heartbeat.
    r = run(runner_bin, "--architecture", "nonsense", env=env, cwd=tmp_path)
    assert r.returncode == 2
    assert sfn_calls(responder, "SendTaskFailure")[-1]["error"] == "USAGE"


def test_secret_names_the_data_location(runner_bin, moto, responder, bucket, tmp_path):  # noqa: F811
    client(moto, "secretsmanager").create_secret(
        Name="wire/locations", SecretString=json.dumps({"data": f"s3://{bucket}/from-secret.csv"}))
    env = env_for(moto, responder, tmp_path)
    r = run(runner_bin, *QUICK, "--mode", "train", "--secret-id", "wire/locations",
            "--output", tmp_path / "out", env=env, cwd=tmp_path)
    line = exit_line(r.stdout + r.stderr)
    assert r.returncode == 3, line  # the secret's location was used: and it is missing
    assert "from-secret.csv" in line["reason"] or "***" in line["reason"]
    r = run(runner_bin, *QUICK, "--mode", "train", "--secret-id", "wire/none",
            "--output", tmp_path / "out", env=env, cwd=tmp_path)
    assert r.returncode == 2, exit_line(r.stdout + r.stderr)


def test_config_from_s3(runner_bin, moto, responder, bucket, tmp_path):  # noqa: F811
    client(moto, "s3").put_object(Bucket=bucket, Key="conf/arguments.json",
                                  Body=json.dumps({"EPOCHS": 7, "MAX_LENGTH": 64}).encode())
    env = env_for(moto, responder, tmp_path)
    r = run(runner_bin, "--check", "--json", "--config", f"s3://{bucket}/conf/arguments.json",
            env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["config"]["epochs"] == 7 and report["config"]["max-length"] == 64
    r = run(runner_bin, "--check", "--config", f"s3://{bucket}/conf/none.json", env=env,
            cwd=tmp_path)
    assert r.returncode in (2, 3), r.stderr[-2000:]


def test_spot_notice_stops_the_job_with_80(runner_bin, moto, responder, bucket, tmp_path):  # noqa: F811
    assert DEMO.is_dir(), "the bundled demo data is part of the repository"
    env = env_for(moto, responder, tmp_path, AWS_EC2_METADATA_SERVICE_ENDPOINT=responder.url,
                  RUNNER_SPOT_POLL_MS="200")
    env.pop("AWS_EC2_METADATA_DISABLED")
    proc = subprocess.Popen([str(runner_bin), *QUICK, "--mode", "train", "--data", str(DEMO),
                             "--epochs", "2000", "--instances", "40",
                             "--early-stopping-patience", "0",
                             "--output", f"s3://{bucket}/spot"],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 60
        while not responder.recorded("GET", "/latest/meta-data/spot/") and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # let training start
        responder.spot_notice = {"action": "terminate", "time": "2026-11-25T10:00:00Z"}
        marked = time.time()
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    line = exit_line(out)
    assert proc.returncode == 80, line
    assert "spot" in line["reason"]
    assert time.time() - marked < 60  # well inside the two minutes
    # What was written before the stop went up, for the next attempt to resume from.
    keys = [o["Key"] for o in client(moto, "s3").list_objects_v2(
        Bucket=bucket, Prefix="spot/").get("Contents", [])]
    assert any("/data/training.csv" in k for k in keys), keys
