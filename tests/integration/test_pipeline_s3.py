"""The job with s3:// data and output (moto on loopback): inputs are fetched, the
artefacts uploaded under the output prefix, and a later predict reads the model from S3."""
import csv
import io
import json

import pytest

from conftest import ROOT, base_env, run

boto3 = pytest.importorskip("boto3")
pytestmark = pytest.mark.timeout(300)
REGION = "eu-west-1"
BUCKET = "pipeline"


@pytest.fixture(scope="module")
def s3(moto):
    client = boto3.client("s3", endpoint_url=moto, region_name=REGION,
                          aws_access_key_id="testing", aws_secret_access_key="testing-secret")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return client


def env_for(moto, work):
    return base_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing-secret",
                    AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=moto,
                    AWS_EC2_METADATA_DISABLED="true", RUNNER_AWS_RETRY_BASE_MS="20",
                    RUNNER_WORK_DIR=work)


def test_s3_data_and_output(runner_bin, moto, s3, tmp_path):
    demo = ROOT / "data" / "demo"
    lines = (demo / "dataset.csv").read_text().splitlines()[:121]
    s3.put_object(Bucket=BUCKET, Key="data/dataset.csv", Body=("\n".join(lines) + "\n").encode())
    for name in ("enumerator.json", "archetype.json", "vocab.txt"):
        s3.put_object(Bucket=BUCKET, Key=f"data/{name}", Body=(demo / name).read_bytes())
    env = env_for(moto, tmp_path / "work")
    proc = run(runner_bin, "--architecture", "bert", "--data", f"s3://{BUCKET}/data",
               "--output", f"s3://{BUCKET}/runs/a", "--trials", 0, "--epochs", 1,
               "--no-serve", "--redis", "off", "--log-format", "json", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/a/")["Contents"]}
    prefix = "runs/a/artefacts/bert/"
    for key in ("data/training.csv", "data/validating.csv", "data/testing.csv",
                "prime/model/config.json", "prime/model/model.safetensors",
                "prime/metrics/testing/fine.txt", "prime/metrics/testing/score.json"):
        assert prefix + key in keys, key
    training = s3.get_object(Bucket=BUCKET, Key=prefix + "data/training.csv")["Body"].read()
    assert len(list(csv.DictReader(io.StringIO(training.decode())))) == 96

    # predict with the model straight from S3
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"tokens": ["Kofi", "Annan", "visited", "Paris"]}) + "\n")
    out = tmp_path / "out.jsonl"
    proc = run(runner_bin, "--mode", "predict", "--model", f"s3://{BUCKET}/{prefix}prime/model",
               "--input", inputs, "--output", out, "--no-serve", "--redis", "off",
               "--log-format", "json", env=env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    row = json.loads(out.read_text())
    assert row["tokens"] == ["Kofi", "Annan", "visited", "Paris"] and len(row["tags"]) == 4
