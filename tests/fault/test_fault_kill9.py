"""kill -9 at seeded random points (docs/faults.md "SIGKILL").

RUNNER_FAULT_INJECT=kill_all makes the worker SIGKILL the supervisor and itself at
once, as a container dies (Batch's SIGKILL after the grace, a lost instance): nothing
runs after it, no checkpoint, no upload. Points are drawn from an uninterrupted run's
trace, many of them inside checkpoint writes (between a checkpoint's files, half way
through one). Before the next attempt the test decides here, from each checkpoint's
manifest, sizes and CRC-32s, which checkpoints are complete; the next attempt must
resume exactly the newest complete one of each run it starts, log every newer torn one
as skipped, finish 0 and end byte for byte as the uninterrupted run.

With an s3:// output (moto) the kill lands in the middle of the final upload: attempt 1
is stopped by SIGTERM (and uploads its checkpoints), attempt 2, on a fresh machine
(another work folder), resumes from S3, finishes and is killed after k of its uploads;
attempt 3, fresh again, resumes from whatever mix S3 then holds. In every third
scenario the kill lands inside the upload of the prime run's last checkpoint, so S3
holds it torn."""
import random

import pytest

from conftest import base_env
from faults import (artefacts, assert_resumed_only_complete_checkpoints,
                    assert_same_results, checkpoints, describe, draw_points, exit_event,
                    inject, result_files, run_to_end, temporaries)

boto3 = pytest.importorskip("boto3")
pytestmark = pytest.mark.timeout(1800)

# Local points and S3 scenarios (CI, long); phases of the local points at least.
COUNTS = {False: 17, True: 34}
S3_COUNTS = {False: 3, True: 6}
AT_LEAST = {"split": 1, "search": 3, "checkpoint": 6, "prime": 2, "evaluation": 2, "export": 2}
REGION = "eu-west-1"
BUCKET = "faults"


def pytest_generate_tests(metafunc):
    long = metafunc.config.getoption("--fault-long")
    if "point_index" in metafunc.fixturenames:
        metafunc.parametrize("point_index", range(COUNTS[long]))
    if "upload_index" in metafunc.fixturenames:
        metafunc.parametrize("upload_index", range(S3_COUNTS[long]))


@pytest.fixture(scope="module")
def reference(uninterrupted, fault_seed, fault_long):
    """The uninterrupted run (conftest.py, once per session) and the points drawn here."""
    points = uninterrupted["points"]
    scale = COUNTS[fault_long] // COUNTS[False]
    drawn = draw_points(points, COUNTS[fault_long], fault_seed,
                        {phase: k * scale for phase, k in AT_LEAST.items()})
    print(f"seed {fault_seed}: {len(points)} fault points, drawn:",
          *(describe(p, fault_seed) for p in drawn), sep="\n  ")
    return dict(uninterrupted, drawn=drawn)


def killed(run):
    """Whether the attempt died of SIGKILL, supervisor included (no exit line)."""
    return run.code == -9 and not run.events("exit")


def test_kill9_then_the_next_attempt_skips_torn_checkpoints_and_ends_as_an_uninterrupted_run(
        runner_bin, reference, point_index, tmp_path, fault_seed):
    p = reference["drawn"][point_index]
    context = describe(p, fault_seed)
    out = tmp_path / "out"
    art = artefacts(out)
    command = [*reference["args"], "--output", out]

    first = run_to_end(runner_bin, command, env=base_env(RUNNER_FAULT_INJECT=inject("kill_all", p)))
    assert first.events("fault_inject"), (context, "the point was not reached",
                                          first.output[-3000:])
    assert killed(first), (context, first.code, first.output[-3000:])
    before = checkpoints(art)  # decided here, by manifest and CRC-32, before the restart

    second = run_to_end(runner_bin, command)
    assert second.code == 0, (context, second.output[-3000:])
    assert exit_event(second)["name"] == "OK"
    assert_resumed_only_complete_checkpoints(before, second, context)
    assert_same_results(art, reference["art"], context)
    assert not temporaries(out), (context, temporaries(out))


# ---- kill -9 in the middle of the upload to S3 ---------------------------------------

@pytest.fixture(scope="module")
def s3(moto):
    client = boto3.client("s3", endpoint_url=moto, region_name=REGION,
                          aws_access_key_id="testing", aws_secret_access_key="testing-secret")
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return client


def s3_env(moto, work, **extra):
    """A fresh machine: its own work folder, where an s3:// output is staged."""
    return base_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing-secret",
                    AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=moto,
                    AWS_EC2_METADATA_DISABLED="true", RUNNER_AWS_RETRY_BASE_MS="20",
                    RUNNER_WORK_DIR=work, **extra)


def download(s3, prefix, folder):
    """Every object under prefix/ into folder (same layout); how many."""
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            path = folder / obj["Key"][len(prefix) + 1:]
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(BUCKET, obj["Key"], str(path))
            count += 1
    return count


def last_prime_checkpoint(reference):
    return max(int(p["detail"].rsplit("/checkpoint-", 1)[1].split("/")[0])
               for p in reference["points"]
               if p["point"] == "checkpoint_file" and "/prime/checkpoint-" in p["detail"])


def test_kill9_mid_upload_then_a_fresh_attempt_resumes_from_what_s3_holds(
        runner_bin, reference, upload_index, moto, s3, tmp_path, fault_seed):
    rng = random.Random(f"{fault_seed}-upload-{upload_index}")
    prefix = f"runs/{fault_seed}-{upload_index}"
    command = [*reference["args"], "--output", f"s3://{BUCKET}/{prefix}"]
    prime_steps = [p for p in reference["points"]
                   if p["point"] == "train_step" and p["detail"] == "prime"]
    # Before the last step: after it the stop lands once the last checkpoint is saved,
    # and attempt 2 (which fetched it) would not upload it again.
    stop = rng.choice(prime_steps[:-1])

    # 1. Stopped in the prime run; its checkpoints are uploaded as it exits 80.
    first = run_to_end(runner_bin, command, env=s3_env(moto, tmp_path / "work1",
                                                       RUNNER_FAULT_INJECT=inject("stop_signal", stop)))
    assert first.code == 80, first.output[-3000:]
    uploaded = first.events("s3_upload")
    assert uploaded and uploaded[-1]["files"] > 0, first.output[-3000:]

    # 2. A fresh machine resumes from S3, finishes, and dies after k of its uploads. It
    # uploads what it wrote (a file it fetched and left alone is recorded as in sync),
    # which includes at least the split, the reports, the curve and the model, rewritten
    # by every attempt that runs the prime run. In every third scenario k is inside the
    # prime run's last checkpoint: S3 then holds 1 to 3 of its 4 files.
    if upload_index % 3 == 0:
        k = rng.randrange(1, 4)
        spec = f"kill_all:0:{k}:s3_upload@/prime/checkpoint-{last_prime_checkpoint(reference)}/"
    else:
        rewritten = [rel for rel in result_files(reference["art"])
                     if rel.startswith(("data/", "prime/"))]
        k = rng.randrange(len(rewritten))
        spec = f"kill_all:0:{k}:s3_upload"
    context = f"SIGTERM at prime step point #{stop['n']}, then {spec}; seed {fault_seed}, " \
              f"rerun with --fault-seed {fault_seed}"
    second = run_to_end(runner_bin, command, env=s3_env(moto, tmp_path / "work2",
                                                        RUNNER_FAULT_INJECT=spec))
    assert second.events("job_done"), (context, second.output[-3000:])
    assert killed(second), (context, second.code, second.output[-3000:])
    held = tmp_path / "held"
    assert download(s3, prefix, held) > 0
    before = checkpoints(artefacts(held))
    print(context, "S3 holds the checkpoints", before)
    if upload_index % 3 == 0:
        assert [s for s in before["prime"].values() if s], (context, before)  # one is torn

    # 3. Another fresh machine, from that mix of both attempts' objects.
    third = run_to_end(runner_bin, command, env=s3_env(moto, tmp_path / "work3"))
    assert third.code == 0, (context, third.output[-3000:])
    assert_resumed_only_complete_checkpoints(before, third, context)
    final = tmp_path / "final"
    download(s3, prefix, final)
    assert_same_results(artefacts(final), reference["art"], context)
    assert not temporaries(final), (context, temporaries(final))


# Whatever the seed draws, two kills always land inside the prime run's last checkpoint
# write: half way through its state.bin, and just before its manifest (every other file
# written). Both leave it torn; the next attempt must say it skipped it.
@pytest.mark.parametrize("point,file", [("file_write", "state.bin"),
                                        ("checkpoint_file", "manifest.json")])
def test_kill9_inside_the_newest_checkpoint_leaves_it_torn_and_the_next_attempt_skips_it(
        runner_bin, reference, tmp_path, point, file):
    prime = [p for p in reference["points"] if p["point"] == point
             and "/prime/checkpoint-" in p["detail"] and p["detail"].endswith("/" + file)]
    p = prime[-1]
    context = describe(p, "-")
    out = tmp_path / "out"
    command = [*reference["args"], "--output", out]
    first = run_to_end(runner_bin, command, env=base_env(RUNNER_FAULT_INJECT=inject("kill_all", p)))
    assert killed(first), (context, first.output[-3000:])
    before = checkpoints(artefacts(out))
    step = int(p["detail"].rsplit("/checkpoint-", 1)[1].split("/")[0])
    assert before["prime"][step] is not None, (context, before)  # torn
    assert any(s is None for s in before["prime"].values()), (context, before)

    second = run_to_end(runner_bin, command)
    assert second.code == 0, (context, second.output[-3000:])
    skipped = [e["msg"] for e in second.events("checkpoint_skipped")]
    assert any(f"prime/checkpoint-{step}:" in m and "incomplete" in m for m in skipped), \
        (context, skipped)
    assert_resumed_only_complete_checkpoints(before, second, context)
    assert_same_results(artefacts(out), reference["art"], context)
