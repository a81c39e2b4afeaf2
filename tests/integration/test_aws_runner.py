"""The runner binary with s3:// locations, against moto on loopback: inputs are fetched,
artefacts uploaded in the original's layout, and S3 failures end in the documented
exit codes (3 for a missing input, 84 when S3 cannot be reached)."""

import pytest

from conftest import ROOT, base_env, exit_line, free_port, run
from test_aws_moto import REGION, SECRET_KEY, client

DEMO = ROOT / "data" / "demo"
JOB = ["--architecture", "bert-tiny", "--mode", "train", "--no-serve", "--redis", "off",
       "--instances", "40", "--epochs", "1", "--workers", "1", "--threads", "1"]


def env_for(endpoint, tmp_path, **extra):
    return base_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                    AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=endpoint,
                    AWS_EC2_METADATA_DISABLED="true", RUNNER_AWS_RETRY_BASE_MS="20",
                    RUNNER_WORK_DIR=tmp_path / "work", TMPDIR=tmp_path, **extra)


@pytest.fixture
def data_bucket(moto, request):  # noqa: F811
    name = "runner-bin-" + request.node.name.lower().replace("_", "-")[5:35].strip("-")
    s3 = client(moto, "s3")
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    if DEMO.is_dir():
        for path in DEMO.rglob("*"):
            if path.is_file():
                s3.upload_file(str(path), name, f"demo/{path.relative_to(DEMO)}")
    return name


def test_missing_s3_data_exits_3(runner_bin, moto, data_bucket, tmp_path):  # noqa: F811
    r = run(runner_bin, *JOB, "--data", f"s3://{data_bucket}/nowhere/train.csv",
            "--output", tmp_path / "out", env=env_for(moto, tmp_path), cwd=tmp_path)
    line = exit_line(r.stdout + r.stderr)
    assert r.returncode == 3, line
    assert "nowhere/train.csv" in line["reason"] and "NoSuchKey" in line["reason"]


def test_unreachable_s3_exits_84(runner_bin, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    r = run(runner_bin, *JOB, "--data", "s3://some-bucket/demo/", "--output", tmp_path / "out",
            env=env_for(dead, tmp_path, RUNNER_AWS_MAX_ATTEMPTS="2"), cwd=tmp_path)
    line = exit_line(r.stdout + r.stderr)
    assert r.returncode == 84, line
    assert line["name"] == "REMOTE_IO" and "failed after 2 attempts" in line["reason"]


def test_train_from_s3_to_s3(runner_bin, moto, data_bucket, tmp_path):  # noqa: F811
    assert DEMO.is_dir(), "the bundled demo data is part of the repository"
    # The same job with local paths first: this test is about S3, not training.
    local = run(runner_bin, *JOB, "--data", DEMO, "--output", tmp_path / "local",
                env=env_for(moto, tmp_path), cwd=tmp_path, timeout=600)
    assert local.returncode == 0, exit_line(local.stdout + local.stderr)
    r = run(runner_bin, *JOB, "--data", f"s3://{data_bucket}/demo/",
            "--output", f"s3://{data_bucket}/run", env=env_for(moto, tmp_path,
                                                              AWS_BATCH_JOB_ID="job-s3"),
            cwd=tmp_path, timeout=600)
    line = exit_line(r.stdout + r.stderr)
    assert r.returncode == 0, line
    s3 = client(moto, "s3")
    keys = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=data_bucket, Prefix="run/") for o in page.get("Contents", [])}
    local_files = {"run/" + str(p.relative_to(tmp_path / "local")).replace("\\", "/")
                   for p in (tmp_path / "local").rglob("*") if p.is_file()}
    # The original's layout, the same files as the local run (tfevents names differ).
    strip = lambda ks: {k for k in ks if "tfevents" not in k}  # noqa: E731
    assert strip(keys) == strip(local_files)
    assert "run/artefacts/bert-tiny/data/training.csv" in keys
    head = s3.head_object(Bucket=data_bucket, Key="run/artefacts/bert-tiny/data/training.csv")
    assert head["Metadata"]["batch-job-id"] == "job-s3"
