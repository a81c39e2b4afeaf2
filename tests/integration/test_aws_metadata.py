"""runner/cloud against the local responder (tests/integration/imds_responder.py) for
the endpoints that have no emulator: IMDSv2 spot notices and instance-role
credentials, ECS container credentials and task metadata, and the Step Functions
callbacks (moto accepts SendTask* but records nothing, so the requests are captured
here and their SigV4 signatures recomputed with botocore)."""
import json
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from conftest import base_env, free_port
from imds_responder import Responder, sigv4_valid

REGION = "eu-west-1"


@pytest.fixture(scope="session")
def aws_tool(runner_bin):
    path = Path(runner_bin).parent / "tools" / "aws_tool"
    if not path.exists():
        pytest.skip(f"{path} is not built")
    return path


@pytest.fixture
def responder():
    with Responder() as r:
        yield r


def tool(aws_tool, *args, env, timeout=60):
    return subprocess.run([str(aws_tool), *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=timeout)


def output(r):
    return [line for line in r.stdout.splitlines() if not line.startswith('{"ts"')]


def logs(r):
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith('{"ts"')]


# ---- spot notices over IMDSv2 ----

def test_spot_notice_is_seen_within_a_poll(aws_tool, responder):
    env = base_env(AWS_EC2_METADATA_SERVICE_ENDPOINT=responder.url, RUNNER_SPOT_POLL_MS="200")
    proc = subprocess.Popen([str(aws_tool), "spot", "20"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        polls = responder.recorded("GET", "/latest/meta-data/spot/")
        assert len(polls) >= 3  # polling, answered 404 until marked
        responder.tokens.clear()  # the session token expires: the watcher takes a new one
        time.sleep(0.6)
        marked = time.time()
        responder.spot_notice = {"action": "terminate", "time": "2026-11-25T10:00:00Z"}
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    seen = time.time() - marked
    assert json.loads(out.splitlines()[-1]) == {"action": "terminate",
                                                 "time": "2026-11-25T10:00:00Z"}
    assert seen < 2.0
    assert '"event":"spot_notice"' in out
    tokens = responder.recorded("PUT", "/latest/api/token")
    assert len(tokens) >= 2
    assert all(t["headers"].get("x-aws-ec2-metadata-token-ttl-seconds") for t in tokens)
    assert all(p["headers"].get("x-aws-ec2-metadata-token")
               for p in responder.recorded("GET", "/latest/meta-data/"))


def test_spot_watcher_off_when_disabled_or_no_imds(aws_tool, responder):
    env = base_env(AWS_EC2_METADATA_SERVICE_ENDPOINT=responder.url,
                   AWS_EC2_METADATA_DISABLED="true", RUNNER_SPOT_POLL_MS="100")
    r = tool(aws_tool, "spot", "1", env=env)
    assert r.returncode == 1 and responder.requests == []

    # Nothing listens (not on EC2): the watcher gives up quickly and says so.
    env = base_env(AWS_EC2_METADATA_SERVICE_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    r = tool(aws_tool, "spot", "2", env=env)  # gives up within the 2 s it is given
    assert r.returncode == 1
    assert any(line["event"] == "spot_watcher" and "off" in line.get("msg", "")
               for line in logs(r))


# ---- ECS task metadata ----

def test_ecs_labels(aws_tool, responder):
    env = base_env(ECS_CONTAINER_METADATA_URI_V4=responder.url + "/v4/abc")
    r = tool(aws_tool, "ecs", env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(output(r)[-1]) == {
        "task_arn": "arn:aws:ecs:eu-west-1:111122223333:task/batch-ce/0123456789abcdef",
        "cluster": "arn:aws:ecs:eu-west-1:111122223333:cluster/batch-ce",
        "availability_zone": "eu-west-1b",
        "log_group": "/aws/batch/job",
        "log_stream": "runner/default/0123456789abcdef",
    }
    r = tool(aws_tool, "ecs", env=base_env())
    assert output(r)[-1] == "null"


# ---- the credentials chain ----

ROLE_KEY = "ASIAROLEKEY0000001"


def creds(aws_tool, env, hashes=False):
    """The credentials the chain resolved; with hashes, the SHA-256 of the secret key and
    of the token too (aws_tool prints those, never the secrets)."""
    r = tool(aws_tool, "credentials", env=env)
    assert r.returncode == 0, r.stderr
    got = json.loads(output(r)[-1])
    if not hashes:
        del got["secret_sha256"], got["token_sha256"]
    return got, r


def test_container_credentials_relative_uri(aws_tool, responder):
    env = base_env(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI="/creds/v2/task-role",
                   RUNNER_AWS_CONTAINER_CREDENTIALS_HOST=f"127.0.0.1:{responder.port}",
                   AWS_EC2_METADATA_DISABLED="true")
    got, r = creds(aws_tool, env)
    assert got["access_key"] == ROLE_KEY and got["token_len"] == len("role-session-token-do-not-log")
    assert got["expires_in"] > 10 ** 8
    assert responder.recorded("GET", "/creds/v2/task-role")
    assert "do-not-log" not in r.stdout + r.stderr


def test_container_credentials_full_uri_with_token_file(aws_tool, responder, tmp_path):
    responder.auth_token = "Bearer-abcdef-123456"
    token_file = tmp_path / "token"
    token_file.write_text("Bearer-abcdef-123456\n")
    env = base_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=responder.url + "/creds/full",
                   AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=token_file,
                   AWS_EC2_METADATA_DISABLED="true")
    got, _ = creds(aws_tool, env)
    assert got["access_key"] == ROLE_KEY
    assert responder.requests[-1]["headers"]["authorization"] == "Bearer-abcdef-123456"

    # The plain variable works too; a wrong token is refused by the endpoint.
    env = base_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=responder.url + "/creds/full",
                   AWS_CONTAINER_AUTHORIZATION_TOKEN="Bearer-wrong-0000",
                   AWS_EC2_METADATA_DISABLED="true", RUNNER_AWS_RETRY_BASE_MS="10")
    r = tool(aws_tool, "credentials", env=env)
    assert r.returncode == 84 and "HTTP 403" in r.stderr
    assert "Bearer-wrong-0000" not in r.stdout + r.stderr

    # http:// goes only to loopback and the ECS/EKS agents.
    env = base_env(AWS_CONTAINER_CREDENTIALS_FULL_URI="http://203.0.113.7/creds",
                   AWS_EC2_METADATA_DISABLED="true")
    r = tool(aws_tool, "credentials", env=env)
    assert r.returncode == 2, r.stderr


def test_instance_role_and_chain_order(aws_tool, responder):
    env = base_env(AWS_EC2_METADATA_SERVICE_ENDPOINT=responder.url)
    got, _ = creds(aws_tool, env)
    assert got["access_key"] == ROLE_KEY
    assert responder.recorded("GET", "/latest/meta-data/iam/security-credentials/runner-test-role")

    # Environment variables come first, then container credentials, then IMDS.
    env_first = base_env(AWS_ACCESS_KEY_ID="AKIAENVKEY", AWS_SECRET_ACCESS_KEY="env-secret-x",
                         AWS_CONTAINER_CREDENTIALS_FULL_URI=responder.url + "/creds/x",
                         AWS_EC2_METADATA_SERVICE_ENDPOINT=responder.url)
    before = len(responder.requests)
    got, _ = creds(aws_tool, env_first)
    assert got == {"access_key": "AKIAENVKEY", "token_len": 0, "expires_in": -1,
                   "region": "us-east-1"}
    assert len(responder.requests) == before

    container_first = base_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=responder.url + "/creds/x",
                               AWS_EC2_METADATA_SERVICE_ENDPOINT=responder.url)
    before = len(responder.recorded("PUT", "/latest/api/token"))
    creds(aws_tool, container_first)
    assert len(responder.recorded("PUT", "/latest/api/token")) == before

    # None at all: a configuration error naming what to set.
    r = tool(aws_tool, "credentials", env=base_env(AWS_EC2_METADATA_DISABLED="true"))
    assert r.returncode == 2 and "AWS_ACCESS_KEY_ID" in r.stderr


def shared_files(tmp_path, credentials, config):
    (tmp_path / "credentials").write_text(credentials)
    (tmp_path / "config").write_text(config)
    return {"AWS_SHARED_CREDENTIALS_FILE": tmp_path / "credentials",
            "AWS_CONFIG_FILE": tmp_path / "config"}


CREDENTIALS_FILE = """\
# written by `aws configure`
[default]
aws_access_key_id = AKIAFILEDEFAULT
aws_secret_access_key = file-default-secret-do-not-log

[dev]
aws_access_key_id=AKIAFILEDEV
aws_secret_access_key=file-dev-secret-do-not-log
aws_session_token = file-dev-token-do-not-log
"""
CONFIG_FILE = """\
[default]
region = eu-central-1
s3 =
  max_concurrent_requests = 4

[profile dev]
region = ap-southeast-2
output = json

[profile cfgonly]
aws_access_key_id = AKIACONFIGONLY
aws_secret_access_key = config-only-secret-do-not-log

[profile processed]
credential_process = /usr/local/bin/get-creds --json
"""


def test_shared_credentials_and_config_files(aws_tool, responder, tmp_path):
    files = shared_files(tmp_path, CREDENTIALS_FILE, CONFIG_FILE)
    # The default profile: keys from the credentials file, region from the config file;
    # it comes before container credentials (the endpoint is never asked).
    before = len(responder.requests)
    got, r = creds(aws_tool, base_env(**files, AWS_EC2_METADATA_DISABLED="true",
                                      AWS_CONTAINER_CREDENTIALS_FULL_URI=responder.url + "/creds/x"))
    assert got == {"access_key": "AKIAFILEDEFAULT", "token_len": 0, "expires_in": -1,
                   "region": "eu-central-1"}
    assert len(responder.requests) == before
    assert "do-not-log" not in r.stdout + r.stderr

    # AWS_PROFILE picks a section; the session token comes along; AWS_REGION still wins.
    got, r = creds(aws_tool, base_env(**files, AWS_PROFILE="dev", AWS_EC2_METADATA_DISABLED="true"))
    assert got["access_key"] == "AKIAFILEDEV" and got["region"] == "ap-southeast-2"
    assert got["token_len"] == len("file-dev-token-do-not-log")
    assert "do-not-log" not in r.stdout + r.stderr
    got, _ = creds(aws_tool, base_env(**files, AWS_PROFILE="dev", AWS_REGION="us-west-2",
                                      AWS_EC2_METADATA_DISABLED="true"))
    assert got["region"] == "us-west-2"

    # Keys may stand in the config file's [profile NAME] section too.
    got, _ = creds(aws_tool, base_env(**files, AWS_PROFILE="cfgonly",
                                      AWS_EC2_METADATA_DISABLED="true"))
    assert got["access_key"] == "AKIACONFIGONLY" and got["region"] == "us-east-1"

    # Environment variables still come first.
    got, _ = creds(aws_tool, base_env(**files, AWS_ACCESS_KEY_ID="AKIAENVKEY",
                                      AWS_SECRET_ACCESS_KEY="env-secret-x"))
    assert got["access_key"] == "AKIAENVKEY"


def test_shared_files_errors_name_the_profile_or_the_line(aws_tool, tmp_path):
    files = shared_files(tmp_path, CREDENTIALS_FILE, CONFIG_FILE)
    r = tool(aws_tool, "credentials", env=base_env(**files, AWS_PROFILE="nope",
                                                   AWS_EC2_METADATA_DISABLED="true"))
    assert r.returncode == 2
    assert "AWS_PROFILE nope: no such profile" in r.stderr and str(tmp_path / "config") in r.stderr

    # A profile whose credential_process cannot be run says so, and is never replaced
    # by other keys (test_aws_profiles.py runs real ones).
    r = tool(aws_tool, "credentials", env=base_env(**files, AWS_PROFILE="processed",
                                                   AWS_EC2_METADATA_DISABLED="true"))
    assert r.returncode == 2
    assert "credential_process /usr/local/bin/get-creds: cannot run it" in r.stderr

    # A line that is not INI: file and line.
    broken = shared_files(tmp_path, "[default]\naws_access_key_id = AKIA\nthis is not ini\n", "")
    r = tool(aws_tool, "credentials", env=base_env(**broken, AWS_EC2_METADATA_DISABLED="true"))
    assert r.returncode == 2 and f"{tmp_path / 'credentials'}:3:" in r.stderr

    # Missing files are no error: the chain goes on (here to "no credentials at all").
    r = tool(aws_tool, "credentials", env=base_env(AWS_EC2_METADATA_DISABLED="true",
                                                   AWS_SHARED_CREDENTIALS_FILE=tmp_path / "none",
                                                   AWS_CONFIG_FILE=tmp_path / "none2"))
    assert r.returncode == 2 and "no AWS credentials" in r.stderr


# ---- roles through STS: web identity (EKS) and profiles that assume a role ----

ROLE = "arn:aws:iam::123456789012:role/trainer"
WEB_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.do-not-log"


def sts_requests(responder):
    return [dict(r, form=parse_qs(r["body"].decode())) for r in responder.recorded("POST", "/")
            if r["headers"].get("content-type", "").startswith("application/x-www-form")]


def test_web_identity_from_the_environment(aws_tool, responder, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(WEB_TOKEN + "\n")
    env = base_env(AWS_ROLE_ARN=ROLE, AWS_WEB_IDENTITY_TOKEN_FILE=token_file,
                   AWS_ENDPOINT_URL_STS=responder.url, AWS_REGION=REGION,
                   AWS_BATCH_JOB_ID="2f1cbd0e-57b3-4a61-9d5a-0123456789ab:4",
                   AWS_EC2_METADATA_DISABLED="true",
                   AWS_CONTAINER_CREDENTIALS_FULL_URI=responder.url + "/creds/x")
    got, r = creds(aws_tool, env)
    assert got["access_key"] == "ASIASTS000000001"
    assert got["token_len"] == len("sts-token-1-do-not-log") and got["expires_in"] > 10 ** 8
    assert [line["source"] for line in logs(r) if line["event"] == "aws_credentials"] == \
        ["web-identity"]
    # Web identity comes before container credentials (never asked), and the call is
    # unsigned: the token is the proof.
    assert not responder.recorded("GET", "/creds")
    (call,) = sts_requests(responder)
    assert "authorization" not in call["headers"]
    assert call["form"] == {"Action": ["AssumeRoleWithWebIdentity"], "Version": ["2011-06-15"],
                            "RoleArn": [ROLE], "WebIdentityToken": [WEB_TOKEN],
                            "RoleSessionName": ["runner-2f1cbd0e-57b3-4a61-9d5a-0123456789ab-4"]}
    assert "do-not-log" not in r.stdout + r.stderr

    # AWS_ROLE_SESSION_NAME names the session; environment keys still come first.
    got, _ = creds(aws_tool, dict(env, AWS_ROLE_SESSION_NAME="nightly-ner"))
    assert sts_requests(responder)[-1]["form"]["RoleSessionName"] == ["nightly-ner"]
    got, _ = creds(aws_tool, dict(env, AWS_ACCESS_KEY_ID="AKIAENVKEY",
                                  AWS_SECRET_ACCESS_KEY="env-secret-x"))
    assert got["access_key"] == "AKIAENVKEY" and len(sts_requests(responder)) == 2


ROLE_CREDENTIALS = """\
[base]
aws_access_key_id = AKIABASEKEY
aws_secret_access_key = base-secret-do-not-log
"""
ROLE_CONFIG = f"""\
[profile trainer]
role_arn = {ROLE}
source_profile = base
external_id = ext-4242
duration_seconds = 900
role_session_name = ner-prime
region = eu-west-1

[profile second]
role_arn = arn:aws:iam::210987654321:role/reader
source_profile = trainer

[profile on-ec2]
role_arn = {ROLE}
credential_source = Ec2InstanceMetadata

[profile eks]
role_arn = {ROLE}
web_identity_token_file = {{token}}

[profile loop-a]
role_arn = {ROLE}
source_profile = loop-b

[profile loop-b]
role_arn = {ROLE}
source_profile = loop-a

[profile dangling]
role_arn = {ROLE}
source_profile = nowhere

[profile no-source]
role_arn = {ROLE}

[profile odd-source]
role_arn = {ROLE}
credential_source = Laptop
"""


def role_files(tmp_path):
    token = tmp_path / "eks-token"
    token.write_text(WEB_TOKEN)
    return shared_files(tmp_path, ROLE_CREDENTIALS, ROLE_CONFIG.format(token=token))


def test_profile_assumes_its_role_with_its_source(aws_tool, responder, tmp_path):
    files = role_files(tmp_path)
    env = base_env(**files, AWS_ENDPOINT_URL_STS=responder.url,
                   AWS_EC2_METADATA_SERVICE_ENDPOINT=responder.url)
    got, r = creds(aws_tool, dict(env, AWS_PROFILE="trainer"))
    assert got["access_key"] == "ASIASTS000000001" and got["region"] == "eu-west-1"
    assert [line["source"] for line in logs(r) if line["event"] == "aws_credentials"] == \
        ["assume-role"]
    (call,) = sts_requests(responder)
    assert call["form"] == {"Action": ["AssumeRole"], "Version": ["2011-06-15"],
                            "RoleArn": [ROLE], "RoleSessionName": ["ner-prime"],
                            "ExternalId": ["ext-4242"], "DurationSeconds": ["900"]}
    # Signed with the source profile's keys, for STS in the profile's region (checked
    # against botocore's signer).
    assert "Credential=AKIABASEKEY/" in call["headers"]["authorization"]
    assert sigv4_valid(call, "base-secret-do-not-log", "eu-west-1", "sts")[0]
    assert "do-not-log" not in r.stdout + r.stderr

    # A chain of roles: the second AssumeRole is signed with the first one's answer.
    got, r = creds(aws_tool, dict(env, AWS_PROFILE="second"))
    first, second = sts_requests(responder)[1:]
    assert first["form"]["RoleArn"] == [ROLE]
    assert second["form"]["RoleArn"] == ["arn:aws:iam::210987654321:role/reader"]
    assert "Credential=ASIASTS000000002/" in second["headers"]["authorization"]
    assert second["headers"]["x-amz-security-token"] == "sts-token-2-do-not-log"
    assert sigv4_valid(second, "sts-secret-2-do-not-log", "us-east-1", "sts")[0]
    assert got["access_key"] == "ASIASTS000000003"
    assert "do-not-log" not in r.stdout + r.stderr

    # credential_source: the instance role signs the AssumeRole.
    got, _ = creds(aws_tool, dict(env, AWS_PROFILE="on-ec2"))
    call = sts_requests(responder)[-1]
    assert "Credential=ASIAROLEKEY0000001/" in call["headers"]["authorization"]
    assert got["access_key"] == "ASIASTS000000004"

    # web_identity_token_file in a profile.
    got, r = creds(aws_tool, dict(env, AWS_PROFILE="eks"))
    call = sts_requests(responder)[-1]
    assert call["form"]["Action"] == ["AssumeRoleWithWebIdentity"]
    assert call["form"]["WebIdentityToken"] == [WEB_TOKEN]
    assert [line["source"] for line in logs(r) if line["event"] == "aws_credentials"] == \
        ["web-identity"]


def test_roles_that_cannot_be_assumed_say_why(aws_tool, responder, tmp_path):
    files = role_files(tmp_path)
    env = base_env(**files, AWS_ENDPOINT_URL_STS=responder.url, AWS_EC2_METADATA_DISABLED="true",
                   RUNNER_AWS_RETRY_BASE_MS="10")

    def refused(profile, *, code=2, **extra):
        r = tool(aws_tool, "credentials", env=dict(env, AWS_PROFILE=profile, **extra))
        assert r.returncode == code, (profile, r.stderr)
        assert "do-not-log" not in r.stdout + r.stderr
        return r.stderr.strip().splitlines()[-1]

    assert "more than 5 source_profile hops" in refused("loop-a")
    assert "source_profile nowhere: no such profile" in refused("dangling")
    assert "role_arn needs source_profile, credential_source or web_identity_token_file" in \
        refused("no-source")
    assert "credential_source Laptop is none of" in refused("odd-source")
    assert "credential_source Ec2InstanceMetadata has no credentials" in refused("on-ec2")

    # STS refuses (the role's trust policy): a configuration to fix, 2, naming the role.
    responder.sts_error = (403, "AccessDenied")
    line = refused("trainer")
    assert f"STS AssumeRole {ROLE}: HTTP 403 AccessDenied: refused by the test" in line
    responder.sts_error = (400, "InvalidIdentityToken")
    assert "HTTP 400 InvalidIdentityToken" in refused("eks")
    # STS unreachable after the retries: 84, which Batch retries.
    responder.sts_error = None
    responder.faults = [503] * 5
    assert "failed after 5 attempts" in refused("trainer", code=84)
    # An unreadable token file names the file.
    r = tool(aws_tool, "credentials", env=base_env(AWS_ROLE_ARN=ROLE,
                                                   AWS_WEB_IDENTITY_TOKEN_FILE=tmp_path / "none",
                                                   AWS_EC2_METADATA_DISABLED="true"))
    assert r.returncode == 2 and str(tmp_path / "none") in r.stderr


# ---- Step Functions callbacks ----

def sfn_env(responder, **extra):
    return base_env(AWS_ACCESS_KEY_ID="AKIATESTKEY", AWS_SECRET_ACCESS_KEY="sfn-secret-key",
                    AWS_SESSION_TOKEN="sfn-session-token-xyz", AWS_REGION=REGION,
                    AWS_ENDPOINT_URL=responder.url, RUNNER_AWS_RETRY_BASE_MS="10",
                    AWS_EC2_METADATA_DISABLED="true", **extra)


def calls(responder, action):
    return [r for r in responder.recorded("POST", "/")
            if r["headers"].get("x-amz-target") == f"AWSStepFunctions.{action}"]


def test_sfn_success_with_heartbeats_signed(aws_tool, responder):
    env = sfn_env(responder, SFN_TASK_TOKEN="task-token-AAAA", RUNNER_SFN_HEARTBEAT_S="1")
    summary = {"metrics": {"f1": 0.87}, "artefacts": ["s3://b/run/artefacts/bert/"]}
    r = tool(aws_tool, "sfn", 0, "", json.dumps(summary), 2.6, env=env)
    assert r.returncode == 0, r.stderr
    beats = calls(responder, "SendTaskHeartbeat")
    assert len(beats) == 2
    assert json.loads(beats[0]["body"]) == {"taskToken": "task-token-AAAA"}
    (success,) = calls(responder, "SendTaskSuccess")
    body = json.loads(success["body"])
    assert body["taskToken"] == "task-token-AAAA"
    assert json.loads(body["output"]) == {"exit": "OK", "code": 0, **summary}
    assert not calls(responder, "SendTaskFailure")
    for req in beats + [success]:
        assert req["headers"]["content-type"] == "application/x-amz-json-1.0"
        assert req["headers"]["x-amz-security-token"] == "sfn-session-token-xyz"
        ok, signed = sigv4_valid(req, "sfn-secret-key", REGION, "states")
        assert ok and "x-amz-target" in signed and "x-amz-security-token" in signed
    # The task token is redacted from every log line.
    assert "task-token-AAAA" not in r.stdout + r.stderr


def test_sfn_failure_names_the_exit_and_survives_a_5xx(aws_tool, responder):
    responder.faults = [500, "drop"]
    reason = "GET s3://data/train.csv: failed after 5 attempts: " + "x" * 40000
    r = tool(aws_tool, "sfn", 84, reason, env=sfn_env(responder, SFN_TASK_TOKEN="tok-BBBB"))
    assert r.returncode == 0, r.stderr
    failure = calls(responder, "SendTaskFailure")[-1]  # the one that was answered
    body = json.loads(failure["body"])
    assert body["error"] == "REMOTE_IO"
    assert body["cause"] == reason[:32768]
    assert len(responder.recorded("POST", "/")) == 3  # two faults, then the answer
    assert sigv4_valid(failure, "sfn-secret-key", REGION, "states")[0]


def test_sfn_stops_heartbeats_when_the_task_is_gone(aws_tool, responder):
    responder.json_answers["AWSStepFunctions.SendTaskHeartbeat"] = (
        400, {"__type": "com.amazonaws.swf.service.v2.model#TaskTimedOut", "message": "gone"})
    env = sfn_env(responder, SFN_TASK_TOKEN="tok-CCCC", RUNNER_SFN_HEARTBEAT_S="1")
    r = tool(aws_tool, "sfn", 0, "", "{}", 3.2, env=env)
    assert r.returncode == 0
    assert len(calls(responder, "SendTaskHeartbeat")) == 1


def test_sfn_without_token_sends_nothing(aws_tool, responder):
    r = tool(aws_tool, "sfn", 0, "", env=sfn_env(responder, RUNNER_SFN_HEARTBEAT_S="1"))
    assert r.returncode == 0 and responder.requests == []


def test_short_lived_credentials_are_refreshed(aws_tool, responder):
    # Expiring within the 5-minute margin: every request asks the endpoint again.
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 120))
    responder.credentials = dict(responder.credentials, Expiration=soon)
    env = base_env(AWS_CONTAINER_CREDENTIALS_FULL_URI=responder.url + "/creds/short",
                   AWS_REGION=REGION, AWS_ENDPOINT_URL=responder.url,
                   AWS_EC2_METADATA_DISABLED="true", SFN_TASK_TOKEN="tok-DDDD",
                   RUNNER_SFN_HEARTBEAT_S="1")
    r = tool(aws_tool, "sfn", 0, "", "{}", 2.5, env=env)
    assert r.returncode == 0, r.stderr
    sent = responder.recorded("POST", "/")
    assert len(sent) == 3  # two heartbeats and the success
    assert len(responder.recorded("GET", "/creds/short")) == 3
    for req in sent:  # signed with the role's keys and token
        assert req["headers"]["x-amz-security-token"] == "role-session-token-do-not-log"
        assert sigv4_valid(req, "role-secret-key-do-not-log", REGION, "states")[0]
    assert "do-not-log" not in r.stdout + r.stderr


def test_s3_requests_are_signed_with_payload_hash(aws_tool, responder, tmp_path):
    """S3 requests recorded by the responder (which answers 404: only the requests
    matter here) verify under botocore's S3 signer: query in canonical order, keys
    encoded once, x-amz-content-sha256 equal to the body's SHA-256."""
    from imds_responder import sha256_hex
    env = sfn_env(responder)
    src = tmp_path / "f.json"
    src.write_bytes(b'{"a": 1}')
    tool(aws_tool, "list", "s3://bkt/some pre+fix/ü", env=env)
    tool(aws_tool, "upload-file", src, "s3://bkt/a b/c+d.json", '{"job_id": "j"}', env=env)
    tool(aws_tool, "fetch", "s3://bkt/x/y.csv", tmp_path / "y.csv", env=env)
    sent = responder.recorded()
    assert [r["method"] for r in sent] == ["GET", "PUT", "GET"]
    assert "encoding-type=url&list-type=2&max-keys=1000&prefix=some%20pre%2Bfix%2F%C3%BC" in sent[0]["path"]
    assert sent[1]["path"] == "/bkt/a%20b/c%2Bd.json"
    for req in sent:
        ok, signed = sigv4_valid(req, "sfn-secret-key", REGION, "s3")
        assert ok, req
        assert {"host", "x-amz-content-sha256", "x-amz-date", "x-amz-security-token"} <= set(signed)
        assert req["headers"]["x-amz-content-sha256"] == sha256_hex(req["body"])
    assert "x-amz-meta-job_id" in sigv4_valid(sent[1], "sfn-secret-key", REGION, "s3")[1]


def test_bucket_in_another_region_is_followed(aws_tool, responder, tmp_path):
    responder.s3_region = "us-west-2"
    env = sfn_env(responder)  # the job runs in eu-west-1
    r = tool(aws_tool, "fetch", "s3://far-bucket/data/train.csv", tmp_path / "train.csv", env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "train.csv").read_text() == "object from us-west-2"
    first, second = responder.recorded()
    assert "/eu-west-1/s3/" in first["headers"]["authorization"]
    assert "/us-west-2/s3/" in second["headers"]["authorization"]
    assert sigv4_valid(second, "sfn-secret-key", "us-west-2", "s3")[0]
    assert any(line["event"] == "s3_region" for line in logs(r))
