"""runner/cloud against moto in server mode on loopback: S3 (get, put, multipart above
the threshold, ListObjectsV2 with continuation, head, object metadata), Secrets
Manager, and fault injection through a small proxy that answers 500/503 or drops
connections. The C code is driven through tests/tools/aws_tool (built beside the
runner binary, in tools/)."""
import hashlib
import http.client
import json
import os
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import base_env

boto3 = pytest.importorskip("boto3")

REGION = "eu-west-1"
SECRET_KEY = "moto-secret-key-never-logged"


@pytest.fixture(scope="session")
def aws_tool(runner_bin):
    path = Path(runner_bin).parent / "tools" / "aws_tool"
    if not path.exists():
        pytest.skip(f"{path} is not built")
    return path


def client(moto, service):
    return boto3.client(service, endpoint_url=moto, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key=SECRET_KEY)


@pytest.fixture
def bucket(moto, request):
    name = "runner-" + request.node.name.lower().replace("_", "-")[:40]
    client(moto, "s3").create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


def tool_env(endpoint, **extra):
    return base_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                    AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=endpoint,
                    AWS_EC2_METADATA_DISABLED="true", RUNNER_AWS_RETRY_BASE_MS="20", **extra)


def tool(aws_tool, *args, env, timeout=120):
    return subprocess.run([str(aws_tool), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def output(r):
    """The tool's own output lines (log lines, which start with {"ts", left out)."""
    return [line for line in r.stdout.splitlines() if not line.startswith('{"ts"')]


# ---- S3 ----

def test_get_put_head_roundtrip(aws_tool, moto, bucket, tmp_path):
    s3 = client(moto, "s3")
    s3.put_object(Bucket=bucket, Key="data/train.csv", Body=b"tokens,tags\nEU,B-ORG\n")
    env = tool_env(moto)
    dest = tmp_path / "deep" / "train.csv"
    r = tool(aws_tool, "fetch", f"s3://{bucket}/data/train.csv", dest, env=env)
    assert r.returncode == 0, r.stderr
    assert dest.read_bytes() == b"tokens,tags\nEU,B-ORG\n"
    assert [p.name for p in dest.parent.iterdir()] == ["train.csv"]  # no temporary left

    r = tool(aws_tool, "head", f"s3://{bucket}/data/train.csv", env=env)
    assert json.loads(output(r)[-1]) == {"exists": True, "size": 21}
    r = tool(aws_tool, "head", f"s3://{bucket}/data/none.csv", env=env)
    assert json.loads(output(r)[-1]) == {"exists": False, "size": -1}

    # A missing input is the caller's bad input (3), and leaves nothing behind.
    missing = tmp_path / "missing.csv"
    r = tool(aws_tool, "fetch", f"s3://{bucket}/data/none.csv", missing, env=env)
    assert r.returncode == 3, r.stderr
    assert "NoSuchKey" in r.stderr
    assert list(tmp_path.glob("missing.csv*")) == []

    src = tmp_path / "score.json"
    src.write_text('{"seqeval_overall_accuracy_score": 0.91}')
    r = tool(aws_tool, "upload-file", src, f"s3://{bucket}/out/score.json",
             '{"job_id": "job-1", "attempt": 2}', env=env)
    assert r.returncode == 0, r.stderr
    obj = s3.get_object(Bucket=bucket, Key="out/score.json")
    assert obj["Body"].read() == src.read_bytes()
    meta = obj["Metadata"]
    assert meta.pop("runner-version").startswith("0.")  # added to every upload
    assert meta == {"job_id": "job-1", "attempt": "2"}
    assert obj["ContentType"] == "application/json"


def test_malformed_uri_is_a_usage_error(aws_tool, moto, tmp_path):
    r = tool(aws_tool, "fetch", "s3://B_AD/key", tmp_path / "x", env=tool_env(moto))
    assert r.returncode == 2
    # A local path is not fetched: nothing to do.
    r = tool(aws_tool, "fetch", "/some/local/file", tmp_path / "x", env=tool_env(moto))
    assert r.returncode == 0 and not (tmp_path / "x").exists()


def make_tree(root, big_bytes):
    """Artefacts in the original's layout, one file above the multipart threshold."""
    files = {
        "data/training.csv": b"a,b\n" * 50,
        "data/validating.csv": b"c,d\n" * 20,
        "data/testing.csv": b"e,f\n" * 20,
        "prime/model/config.json": b'{"model_type": "bert"}',
        "prime/model/vocab.txt": b"[PAD]\n[UNK]\n",
        "prime/metrics/testing/score.json": b'{"seqeval_overall_accuracy_score": 0.5}',
        "prime/model/model.safetensors": os.urandom(big_bytes),
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return files


MULTIPART = {"RUNNER_S3_MULTIPART_THRESHOLD": str(6 << 20), "RUNNER_S3_PART_SIZE": str(5 << 20)}


def test_upload_tree_multipart_list_and_fetch_prefix(aws_tool, moto, bucket, tmp_path):
    files = make_tree(tmp_path / "bert", (12 << 20) + 7)  # 3 parts: 5 + 5 + 2 MiB
    env = tool_env(moto, AWS_BATCH_JOB_ID="batch-job-7", AWS_BATCH_JOB_ATTEMPT="2", **MULTIPART)
    meta = '{"job_id": "job-42", "architecture": "bert"}'
    r = tool(aws_tool, "upload-tree", tmp_path / "bert", f"s3://{bucket}/run/artefacts/bert",
             meta, env=env)
    assert r.returncode == 0, r.stderr
    assert '"event":"s3_multipart"' in r.stdout and "3 parts" in r.stdout

    s3 = client(moto, "s3")
    keys = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {f"run/artefacts/bert/{k}": len(v) for k, v in files.items()}
    big = s3.head_object(Bucket=bucket, Key="run/artefacts/bert/prime/model/model.safetensors")
    assert big["ETag"].endswith('-3"')  # a multipart object of 3 parts
    assert big["Metadata"]["architecture"] == "bert"
    assert big["Metadata"]["batch-job-id"] == "batch-job-7"
    assert big["Metadata"]["batch-job-attempt"] == "2"

    # ListObjectsV2 in pages of 2: 7 keys need 4 pages joined by continuation tokens.
    r = tool(aws_tool, "list", f"s3://{bucket}/run/", env=dict(env, RUNNER_S3_LIST_PAGE="2",
                                                             AWS_TOOL_DEBUG="1"))
    assert r.returncode == 0, r.stderr
    listed = dict(line.rsplit(" ", 1) for line in output(r))
    assert {k: int(v) for k, v in listed.items()} == keys
    assert "4 pages" in r.stdout

    back = tmp_path / "back"
    r = tool(aws_tool, "fetch-prefix", f"s3://{bucket}/run/artefacts", back,
             env=dict(env, RUNNER_S3_LIST_PAGE="3"))
    assert r.returncode == 0, r.stderr
    for rel, data in files.items():
        assert (back / "bert" / rel).read_bytes() == data, rel

    # Keys with spaces, plus signs and non-ASCII letters survive the listing.
    odd = "run/odd/a b+c/ü&x.txt"
    s3.put_object(Bucket=bucket, Key=odd, Body=b"odd")
    r = tool(aws_tool, "fetch-prefix", f"s3://{bucket}/run/odd", tmp_path / "odd", env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "odd" / "a b+c" / "ü&x.txt").read_bytes() == b"odd"

    # "run/artefacts" is a folder: a sibling "run/artefacts-old/" is not part of it.
    s3.put_object(Bucket=bucket, Key="run/artefacts-old/x", Body=b"x")
    r = tool(aws_tool, "fetch-prefix", f"s3://{bucket}/run/artefacts", tmp_path / "again",
             env=env)
    assert not (tmp_path / "again-old").exists() and not list((tmp_path / "again").rglob("x"))

    # An empty prefix (a first attempt: nothing to resume) is not an error.
    r = tool(aws_tool, "fetch-prefix", f"s3://{bucket}/nothing-here", tmp_path / "empty",
             env=env)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "empty").exists() or not list((tmp_path / "empty").iterdir())


# ---- fault injection ----

class FaultProxy:
    """Forwards to moto, except that requests matching `match` take the next entry of
    `faults`: an HTTP status (answered with an S3 error body), "drop" (the connection
    is closed without an answer) or None (forwarded)."""

    CODES = {500: "InternalError", 503: "SlowDown", 403: "AccessDenied"}

    def __init__(self, upstream, faults, match=lambda method, path: True):
        self.upstream = upstream.split("//", 1)[1]
        self.faults = list(faults)
        self.match = match
        self.seen = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    fault = None
                    if proxy.match(self.command, self.path):
                        fault = proxy.faults.pop(0) if proxy.faults else None
                    proxy.seen.append((self.command, self.path, fault))
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(fault, int):
                    xml = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>"
                           f"{proxy.CODES.get(fault, 'InternalError')}</Code>"
                           f"<Message>injected</Message></Error>").encode()
                    self.send_response(fault)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    self.wfile.write(xml)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                         "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = handle_one

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def is_part(method, path):
    return method == "PUT" and "partNumber=" in path


def test_upload_survives_5xx_throttling_and_dropped_connections(aws_tool, moto, bucket, tmp_path):
    files = make_tree(tmp_path / "bert", (11 << 20) + 3)
    # Every kind of fault, on single PUTs and on parts alike; 5 attempts each by default.
    # None lets a request through: at most 4 faults in a row, under the 5 attempts.
    proxy = FaultProxy(moto, [500, "drop", 503, 500, None, "drop", 503, None, 503],
                       match=lambda m, p: m == "PUT")
    try:
        r = tool(aws_tool, "upload-tree", tmp_path / "bert", f"s3://{bucket}/ok",
                 env=tool_env(proxy.url, **MULTIPART))
    finally:
        proxy.close()
    assert r.returncode == 0, r.stderr
    assert r.stdout.count('"event":"aws_retry"') == 7
    faults = [f for _, _, f in proxy.seen if f is not None]
    assert faults == [500, "drop", 503, 500, "drop", 503, 503]
    s3 = client(moto, "s3")
    for rel, data in files.items():
        got = s3.get_object(Bucket=bucket, Key=f"ok/{rel}")["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), rel


def test_part_failing_after_retries_exits_84_and_leaves_no_object(aws_tool, moto, bucket,
                                                                   tmp_path):
    big = tmp_path / "model.safetensors"
    big.write_bytes(os.urandom((11 << 20) + 1))
    # The second part always fails; the other requests (create, abort) go through.
    def second_part(method, path):
        return is_part(method, path) and "partNumber=2&" in path

    proxy = FaultProxy(moto, [503] * 100, match=second_part)
    try:
        r = tool(aws_tool, "upload-file", big, f"s3://{bucket}/final/model.safetensors",
                 env=tool_env(proxy.url, RUNNER_AWS_MAX_ATTEMPTS="3", **MULTIPART))
    finally:
        proxy.close()
    assert r.returncode == 84, r.stderr
    assert "part 2/3" in r.stderr and "failed after 3 attempts" in r.stderr
    assert sum(1 for _, p, f in proxy.seen if f == 503) == 3
    s3 = client(moto, "s3")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="final/")
    # The multipart upload was aborted, so no parts linger either.
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    assert any(m == "DELETE" and "uploadId=" in p for m, p, _ in proxy.seen)


def test_dropped_connections_on_download_then_84(aws_tool, moto, bucket, tmp_path):
    client(moto, "s3").put_object(Bucket=bucket, Key="in.csv", Body=b"x" * 1000)
    proxy = FaultProxy(moto, ["drop", 500])
    try:
        r = tool(aws_tool, "fetch", f"s3://{bucket}/in.csv", tmp_path / "in.csv",
                 env=tool_env(proxy.url))
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "in.csv").read_bytes() == b"x" * 1000
        proxy.faults = ["drop"] * 10
        r = tool(aws_tool, "fetch", f"s3://{bucket}/in.csv", tmp_path / "again.csv",
                 env=tool_env(proxy.url, RUNNER_AWS_MAX_ATTEMPTS="4"))
    finally:
        proxy.close()
    assert r.returncode == 84, r.stderr
    assert list(tmp_path.glob("again.csv*")) == []


def test_access_denied_is_3_on_reads_and_4_on_writes(aws_tool, moto, bucket, tmp_path):
    proxy = FaultProxy(moto, [403] * 10)
    src = tmp_path / "f.txt"
    src.write_text("x")
    try:
        r = tool(aws_tool, "fetch", f"s3://{bucket}/f.txt", tmp_path / "g.txt",
                 env=tool_env(proxy.url))
        assert r.returncode == 3 and "access denied" in r.stderr, r.stderr
        r = tool(aws_tool, "upload-file", src, f"s3://{bucket}/f.txt", env=tool_env(proxy.url))
        assert r.returncode == 4 and "access denied" in r.stderr, r.stderr
    finally:
        proxy.close()
    # Not retried: one request each.
    assert len(proxy.seen) == 2


# ---- Secrets Manager ----

# ---- STS: the roles the credentials chain assumes, answered by moto's STS ----

def caller_arn(moto, access_key):
    """Who moto says these credentials are (moto keys assumed roles by access key)."""
    sts = boto3.client("sts", endpoint_url=moto, region_name=REGION,
                       aws_access_key_id=access_key, aws_secret_access_key="unused")
    return sts.get_caller_identity()["Arn"]


def test_web_identity_and_profile_roles_against_moto_sts(aws_tool, moto, bucket, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2ln\n")
    env = base_env(AWS_ROLE_ARN="arn:aws:iam::123456789012:role/ner-trainer",
                   AWS_WEB_IDENTITY_TOKEN_FILE=token_file, AWS_DEFAULT_REGION=REGION,
                   AWS_ENDPOINT_URL=moto, AWS_EC2_METADATA_DISABLED="true",
                   AWS_BATCH_JOB_ID="5e0d6c7a-2b1f-4c3d-8e9f-a0b1c2d3e4f5#1")
    r = tool(aws_tool, "credentials", env=env)
    assert r.returncode == 0, r.stderr
    got = json.loads(output(r)[-1])
    assert got["access_key"].startswith("ASIA") and 0 < got["expires_in"] <= 3600
    assert caller_arn(moto, got["access_key"]) == (
        "arn:aws:sts::123456789012:assumed-role/ner-trainer/"
        "runner-5e0d6c7a-2b1f-4c3d-8e9f-a0b1c2d3e4f5-1")
    # The assumed role's credentials sign the job's S3 traffic.
    src = tmp_path / "f.txt"
    src.write_text("written under the assumed role\n")
    r = tool(aws_tool, "upload-file", src, f"s3://{bucket}/role/f.txt", env=env)
    assert r.returncode == 0, r.stderr
    body = client(moto, "s3").get_object(Bucket=bucket, Key="role/f.txt")["Body"].read()
    assert body == b"written under the assumed role\n"

    # A profile whose role is assumed with another role's credentials.
    (tmp_path / "config").write_text(
        "[profile base]\naws_access_key_id = AKIABASEKEY\naws_secret_access_key = s\n\n"
        "[profile first]\nrole_arn = arn:aws:iam::123456789012:role/first\n"
        "source_profile = base\n\n"
        "[profile second]\nrole_arn = arn:aws:iam::123456789012:role/second\n"
        "source_profile = first\nrole_session_name = ner-second\nduration_seconds = 1800\n")
    env = base_env(AWS_PROFILE="second", AWS_CONFIG_FILE=tmp_path / "config",
                   AWS_DEFAULT_REGION=REGION, AWS_ENDPOINT_URL=moto,
                   AWS_EC2_METADATA_DISABLED="true")
    r = tool(aws_tool, "credentials", env=env)
    assert r.returncode == 0, r.stderr
    got = json.loads(output(r)[-1])
    assert 1700 < got["expires_in"] <= 1800
    assert caller_arn(moto, got["access_key"]) == \
        "arn:aws:sts::123456789012:assumed-role/second/ner-second"


def test_secret_json_and_missing(aws_tool, moto):
    sm = client(moto, "secretsmanager")
    value = {"data_bucket": "ner-data-bucket", "output_bucket": "ner-output-bucket"}
    sm.create_secret(Name="runner/buckets", SecretString=json.dumps(value))
    env = tool_env(moto)
    r = tool(aws_tool, "secret", "runner/buckets", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(output(r)[-1]) == value
    # The value never reaches a log line.
    logs = [line for line in r.stdout.splitlines() if line.startswith('{"ts"')]
    assert logs and not any("ner-output-bucket" in line for line in logs)

    r = tool(aws_tool, "secret", "runner/none", env=env)
    assert r.returncode == 2 and "no such secret" in r.stderr


def test_secret_fills_locations_left_at_their_defaults(aws_tool, moto):
    sm = client(moto, "secretsmanager")
    sm.create_secret(Name="runner/locations", SecretString=json.dumps({
        "DATA_BUCKET": "ner-data", "output_uri": "s3://ner-out/runs/7",
        "model": "s3://ner-models/bert-base-uncased", "unrelated": "ignored"}))
    r = tool(aws_tool, "apply-secret", "runner/locations", env=tool_env(moto))
    assert r.returncode == 0, r.stderr
    assert json.loads(output(r)[-1]) == {
        "data": "s3://ner-data", "model": "s3://ner-models/bert-base-uncased",
        "output": "s3://ner-out/runs/7", "hyperspace": ""}
    # An output given explicitly (flag, environment, --config) wins over the secret.
    r = tool(aws_tool, "apply-secret", "runner/locations", "/mnt/out", env=tool_env(moto))
    assert json.loads(output(r)[-1])["output"] == "/mnt/out"
    # The log names what was applied, never the values.
    log_lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith('{"ts"')]
    (applied,) = [line for line in log_lines if line["event"] == "secret_locations"]
    assert applied["applied"] == ["data", "model"]
    assert not any("ner-models" in json.dumps(line) for line in log_lines)


def test_job_summary_reads_metrics_from_s3(aws_tool, moto, bucket, tmp_path):
    s3 = client(moto, "s3")
    score = {"seqeval_overall_accuracy_score": 0.93}
    s3.put_object(Bucket=bucket, Key="run/artefacts/bert/prime/metrics/testing/score.json",
                  Body=json.dumps(score).encode())
    r = tool(aws_tool, "summary", f"s3://{bucket}/run/", "bert", env=tool_env(moto))
    assert r.returncode == 0, r.stderr
    assert json.loads(output(r)[-1]) == {
        "artefacts": f"s3://{bucket}/run/artefacts/bert/",
        "model": f"s3://{bucket}/run/artefacts/bert/prime/model/",
        "metrics": {"testing": score}}
    # A local output works the same way, from the file.
    local = tmp_path / "out" / "artefacts" / "bert" / "prime" / "metrics" / "validating"
    local.mkdir(parents=True)
    (local / "score.json").write_text(json.dumps(score))
    r = tool(aws_tool, "summary", tmp_path / "out", "bert", env=tool_env(moto))
    assert json.loads(output(r)[-1])["metrics"] == {"validating": score}


def test_check_output_leaves_nothing_and_says_4_when_forbidden(aws_tool, moto, bucket):
    env = tool_env(moto)
    r = tool(aws_tool, "check-output", f"s3://{bucket}/runs/7", env=env)
    assert r.returncode == 0, r.stderr
    s3 = client(moto, "s3")
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    r = tool(aws_tool, "check-output", "s3://no-such-bucket-here/runs", env=env)
    assert r.returncode == 4 and "NoSuchBucket" in r.stderr, r.stderr
    proxy = FaultProxy(moto, [403])
    try:
        r = tool(aws_tool, "check-output", f"s3://{bucket}/runs", env=tool_env(proxy.url))
    finally:
        proxy.close()
    assert r.returncode == 4 and "access denied" in r.stderr
    assert tool(aws_tool, "check-output", "/local/dir", env=env).returncode == 0


def test_resumed_attempt_uploads_only_what_it_wrote(aws_tool, moto, bucket, tmp_path):
    s3 = client(moto, "s3")
    for i in range(4):
        s3.put_object(Bucket=bucket, Key=f"run/artefacts/bert/prime/checkpoint-{i}/state.bin",
                      Body=os.urandom(100))
    proxy = FaultProxy(moto, [])
    try:
        r = tool(aws_tool, "resume", f"s3://{bucket}/run", tmp_path / "out", "new.txt",
                 env=tool_env(proxy.url))
    finally:
        proxy.close()
    assert r.returncode == 0, r.stderr
    uploads = [json.loads(line) for line in r.stdout.splitlines()
               if '"event":"s3_upload"' in line]
    assert [(u["files"], u["unchanged"]) for u in uploads] == [(1, 4), (0, 5)]
    assert [p for m, p, _ in proxy.seen if m == "PUT"] == [f"/{bucket}/run/new.txt"]
    assert s3.get_object(Bucket=bucket, Key="run/new.txt")["Body"].read() == \
        b"written by this attempt\n"
