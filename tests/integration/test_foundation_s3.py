"""--config and --output as s3:// URIs (DESIGN §2), against moto on loopback."""
import json

import pytest

from conftest import base_env, exit_line, run

boto3 = pytest.importorskip("boto3")
REGION = "eu-west-1"


@pytest.fixture(scope="module")
def s3(moto):
    client = boto3.client("s3", endpoint_url=moto, region_name=REGION,
                          aws_access_key_id="testing", aws_secret_access_key="testing-secret")
    client.create_bucket(Bucket="foundation", CreateBucketConfiguration={"LocationConstraint": REGION})
    return client


def env_for(moto, **extra):
    return base_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing-secret",
                    AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=moto,
                    AWS_EC2_METADATA_DISABLED="true", RUNNER_AWS_RETRY_BASE_MS="20", **extra)


def test_config_from_s3(runner_bin, moto, s3):
    s3.put_object(Bucket="foundation", Key="jobs/arguments.json",
                  Body=json.dumps({"EPOCHS": 6, "TRAIN_BATCH_SIZE": 8}).encode())
    proc = run(runner_bin, "--config", "s3://foundation/jobs/arguments.json", "--check",
               "--json", env=env_for(moto), timeout=60)
    assert proc.returncode == 0, proc.stderr
    config = json.loads(proc.stdout.splitlines()[0])["config"]
    assert (config["epochs"], config["train-batch-size"]) == (6, 8)
    assert config["config"] == "s3://foundation/jobs/arguments.json"


def test_bad_config_in_s3_names_the_uri(runner_bin, moto, s3):
    s3.put_object(Bucket="foundation", Key="jobs/broken.json", Body=b'{"EPOCHS": ')
    proc = run(runner_bin, "--config", "s3://foundation/jobs/broken.json", env=env_for(moto),
               timeout=60)
    assert proc.returncode == 2
    assert "s3://foundation/jobs/broken.json" in proc.stderr and "truncated" in proc.stderr
    proc = run(runner_bin, "--config", "s3://foundation/jobs/missing.json", env=env_for(moto),
               timeout=60)
    assert proc.returncode == 2
    # (the cloud module may log its credentials source first, as JSON)
    errors = [l for l in proc.stderr.splitlines() if not l.startswith('{"ts"')]
    assert len(errors) == 1 and errors[0].startswith("runner: --config s3://foundation/jobs/missing.json")
    assert errors[0].count("--config") == 1


def test_s3_output_is_checked(runner_bin, moto, s3):
    proc = run(runner_bin, "--check", "--json", "--output", "s3://foundation/runs/1",
               env=env_for(moto), timeout=60)
    assert proc.returncode == 0, proc.stderr
    disk = json.loads(proc.stdout.splitlines()[0])["disk"]
    assert disk["remote_writable"] is True and disk["staging"]
    proc = run(runner_bin, "--check", "--json", "--output", "s3://no-such-bucket-here/runs",
               env=env_for(moto), timeout=60)
    assert proc.returncode == 4
    assert "s3://no-such-bucket-here/runs" in exit_line(proc.stderr)["reason"]
