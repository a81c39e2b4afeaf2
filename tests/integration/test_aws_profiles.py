"""Profiles that get their credentials from a credential_process or from SSO, run by
aws_tool against real shell scripts and the local responder's SSO portal
(tests/integration/imds_responder.py), and checked against boto3 reading the same
~/.aws files: botocore runs the same credential_process and reads the same SSO token
cache, so both must come to the same credentials and send the portal the same request."""
import hashlib
import json
import os
import shlex
import stat
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from conftest import base_env
from imds_responder import sigv4_valid
from test_aws_metadata import aws_tool, creds, logs, responder, shared_files, tool  # noqa: F401

REGION = "eu-west-1"


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def script(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def boto3_credentials(monkeypatch, env, profile):
    """What boto3 resolves for `profile` with the same files, HOME and endpoints."""
    import boto3
    import botocore.credentials
    import botocore.tokens
    # botocore fixes its SSO cache folder from HOME when it is imported: point it at ours.
    cache = str(Path(env["HOME"]) / ".aws" / "sso" / "cache")
    monkeypatch.setattr(botocore.credentials.SSOProvider, "_SSO_TOKEN_CACHE_DIR", cache)
    monkeypatch.setattr(botocore.tokens.SSOTokenProvider, "_SSO_TOKEN_CACHE_DIR", cache)
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("AWS_") or name in ("HOME", "COUNT_FILE", "ARGS_FILE"):
            monkeypatch.setenv(name, str(value))
    return boto3.Session(profile_name=profile).get_credentials().get_frozen_credentials()


# ---- credential_process ----

PROCESS_JSON = ('{"Version": 1, "AccessKeyId": "ASIAPROCESS0001", '
                '"SecretAccessKey": "process-secret-do-not-log", '
                '"SessionToken": "process-token-do-not-log", "Expiration": "%s"}')


def helper(tmp_path, expiration="2099-01-01T00:00:00Z"):
    """A credential process in a folder with a space: it records its arguments (one per
    line) and counts its runs, says something on stderr, and prints credentials."""
    folder = tmp_path / "cred tools"
    folder.mkdir(exist_ok=True)
    return script(folder / "helper.sh", f"""\
printf '%s\\n' "$@" > "$ARGS_FILE"
echo run >> "$COUNT_FILE"
echo "helper: fetched from the vault" >&2
printf '%s' '{PROCESS_JSON % expiration}'
""")


def process_env(tmp_path, config, credentials="", **extra):
    files = shared_files(tmp_path, credentials, config)
    return base_env(**files, HOME=tmp_path, AWS_EC2_METADATA_DISABLED="true",
                    ARGS_FILE=tmp_path / "args", COUNT_FILE=tmp_path / "count", **extra)


def runs(tmp_path):
    count = tmp_path / "count"
    return len(count.read_text().splitlines()) if count.exists() else 0


def test_credential_process_is_split_as_botocore_splits_it(aws_tool, tmp_path, monkeypatch):
    path = helper(tmp_path)
    command = (f'"{path}" --account 1234 "two words" \'single $HOME\' a\\ b '
               f'"q\\"x" $HOME ~ * ";" "" end')
    env = process_env(tmp_path, f"[profile proc]\ncredential_process = {command}\n",
                      AWS_PROFILE="proc")
    got, r = creds(aws_tool, env, hashes=True)
    # No shell: every word reaches the program as shlex.split (botocore's split) gives it,
    # $HOME, ~ and * unexpanded, the empty word kept.
    assert (tmp_path / "args").read_text().split("\n")[:-1] == shlex.split(command)[1:]
    assert got["access_key"] == "ASIAPROCESS0001"
    assert got["secret_sha256"] == sha256("process-secret-do-not-log")
    assert got["token_sha256"] == sha256("process-token-do-not-log")
    assert got["expires_in"] > 10 ** 8
    assert [line["source"] for line in logs(r) if line["event"] == "aws_credentials"] == \
        ["process"]
    # Its stderr is passed through; its stdout (the secret) is never printed.
    assert "helper: fetched from the vault" in r.stderr
    assert "do-not-log" not in r.stdout + r.stderr

    # boto3 runs the same command from the same file and gets the same credentials.
    frozen = boto3_credentials(monkeypatch, env, "proc")
    assert (tmp_path / "args").read_text().split("\n")[:-1] == shlex.split(command)[1:]
    assert frozen.access_key == got["access_key"]
    assert sha256(frozen.secret_key) == got["secret_sha256"]
    assert sha256(frozen.token) == got["token_sha256"]


def test_credential_process_order_against_static_keys(aws_tool, tmp_path, monkeypatch):
    """botocore asks the credentials file's keys first, then the process, then the config
    file's keys: the runner keeps that order."""
    path = helper(tmp_path)
    config = (f"[profile both]\ncredential_process = \"{path}\"\n"
              "aws_access_key_id = AKIACONFIGKEY\naws_secret_access_key = config-secret\n")
    env = process_env(tmp_path, config, AWS_PROFILE="both")
    got, _ = creds(aws_tool, env)
    assert got["access_key"] == "ASIAPROCESS0001" and runs(tmp_path) == 1
    assert boto3_credentials(monkeypatch, env, "both").access_key == "ASIAPROCESS0001"

    env = process_env(tmp_path, config, AWS_PROFILE="both",
                      credentials="[both]\naws_access_key_id = AKIAFILEKEY\n"
                                  "aws_secret_access_key = file-secret\n")
    got, _ = creds(aws_tool, env)
    assert got["access_key"] == "AKIAFILEKEY" and runs(tmp_path) == 2  # boto3's run above
    assert boto3_credentials(monkeypatch, env, "both").access_key == "AKIAFILEKEY"
    assert runs(tmp_path) == 2


def test_credential_process_failures_are_one_line_with_an_exit_code(aws_tool, tmp_path):
    def refused(body, code=2, timeout_s=None, command_args=""):
        path = script(tmp_path / "bad.sh", body)
        extra = {"RUNNER_AWS_CREDENTIAL_PROCESS_TIMEOUT_S": timeout_s} if timeout_s else {}
        env = process_env(tmp_path, f"[profile bad]\ncredential_process = {path}{command_args}\n",
                          AWS_PROFILE="bad", **extra)
        start = time.time()
        r = tool(aws_tool, "credentials", env=env)
        assert r.returncode == code, r.stderr
        assert "do-not-log" not in r.stdout + r.stderr
        line = r.stderr.strip().splitlines()[-1]
        assert f"AWS profile bad: credential_process {path}" in line
        return line, r, time.time() - start

    line, r, _ = refused('echo "vault is locked" >&2\nexit 3\n')
    assert "exited with status 3" in line and "vault is locked" in r.stderr
    line, _, _ = refused("echo 'AKIA1 secret-do-not-log'\n")
    assert "not a JSON object" in line
    line, _, _ = refused('echo \'{"Version": 2, "AccessKeyId": "A", '
                         '"SecretAccessKey": "s-do-not-log"}\'\n')
    assert '"Version": 1' in line
    line, _, _ = refused('echo \'{"Version": 1, "AccessKeyId": "A"}\'\n')
    assert "no SecretAccessKey" in line
    line, _, _ = refused("echo '{}'\n", command_args=" --secret-arg-do-not-log")
    assert "--secret" not in line
    # A hang: killed with what it started after the timeout, 84 (Batch retries it).
    line, _, took = refused(f"sleep 30 &\necho $! > {tmp_path}/child\nsleep 30\n",
                            code=84, timeout_s="1")
    assert "no answer within 1 s" in line and took < 5
    # Its own child is gone too (at most a zombie left to init): the group was killed.
    stat_file = Path(f"/proc/{int((tmp_path / 'child').read_text())}/stat")
    time.sleep(0.2)
    assert not stat_file.exists() or stat_file.read_text().rsplit(")", 1)[1].split()[0] == "Z"

    env = process_env(tmp_path, "[profile q]\ncredential_process = helper 'open\n",
                      AWS_PROFILE="q")
    r = tool(aws_tool, "credentials", env=env)
    assert r.returncode == 2 and "no closing quote" in r.stderr


def test_credential_process_runs_again_before_expiration(aws_tool, responder, tmp_path):
    # Credentials that expire within the 5-minute margin are fetched again for every
    # request; ones that do not expire soon are fetched once.
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 120))
    config = f"[profile proc]\ncredential_process = \"{helper(tmp_path, soon)}\"\n"
    env = process_env(tmp_path, config, AWS_PROFILE="proc", AWS_REGION=REGION,
                      AWS_ENDPOINT_URL=responder.url, SFN_TASK_TOKEN="tok-PROC",
                      RUNNER_SFN_HEARTBEAT_S="1")
    r = tool(aws_tool, "sfn", 0, "", "{}", 2.5, env=env)
    assert r.returncode == 0, r.stderr
    sent = responder.recorded("POST", "/")
    assert len(sent) == 3 and runs(tmp_path) == 3
    for req in sent:
        assert req["headers"]["x-amz-security-token"] == "process-token-do-not-log"
        assert sigv4_valid(req, "process-secret-do-not-log", REGION, "states")[0]
    assert "do-not-log" not in r.stdout + r.stderr

    (tmp_path / "count").unlink()
    env["ARGS_FILE"] = tmp_path / "args2"
    config = f"[profile proc]\ncredential_process = \"{helper(tmp_path)}\"\n"
    (tmp_path / "config").write_text(config)
    r = tool(aws_tool, "sfn", 0, "", "{}", 2.5, env=env)
    assert r.returncode == 0, r.stderr
    assert runs(tmp_path) == 1


# ---- SSO ----

START_URL = "https://corp-sso.awsapps.com/start"
LEGACY_URL = "https://legacy-sso.awsapps.com/start"
SSO_CONFIG = f"""\
[profile sso-new]
sso_session = corp
sso_account_id = 111122223333
sso_role_name = Trainer
region = eu-west-1

[sso-session corp]
sso_start_url = {START_URL}
sso_region = eu-central-1
sso_registration_scopes = sso:account:access

[profile sso-legacy]
sso_start_url = {LEGACY_URL}
sso_region = us-east-2
sso_account_id = 444455556666
sso_role_name = Reader

[profile sso-partial]
sso_start_url = {LEGACY_URL}
sso_account_id = 444455556666
sso_role_name = Reader

[profile sso-mismatch]
sso_session = corp
sso_region = us-west-2
sso_account_id = 111122223333
sso_role_name = Trainer

[profile sso-nosession]
sso_session = elsewhere
sso_account_id = 111122223333
sso_role_name = Trainer

[profile sso-as-source]
role_arn = arn:aws:iam::123456789012:role/trainer
source_profile = sso-new

[profile with-mfa]
role_arn = arn:aws:iam::123456789012:role/trainer
source_profile = sso-legacy
mfa_serial = arn:aws:iam::123456789012:mfa/alice
"""


def cache_token(home, key, token, expires_in_s=3600):
    """Write the AWS CLI's token cache entry, named as botocore names it (sha1)."""
    cache = Path(home) / ".aws" / "sso" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + expires_in_s))
    path = cache / (hashlib.sha1(key.encode()).hexdigest() + ".json")
    path.write_text(json.dumps({"startUrl": START_URL, "region": "eu-central-1",
                                "accessToken": token, "expiresAt": expires}))
    return path


def sso_env(tmp_path, responder, **extra):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    files = shared_files(tmp_path, "", SSO_CONFIG)
    return base_env(**files, HOME=home, AWS_ENDPOINT_URL_SSO=responder.url,
                    AWS_ENDPOINT_URL_STS=responder.url, AWS_EC2_METADATA_DISABLED="true",
                    RUNNER_AWS_RETRY_BASE_MS="10", **extra)


def portal_calls(responder):
    return [dict(r, query=parse_qs(urlsplit(r["path"]).query))
            for r in responder.recorded("GET", "/federation/credentials")]


def test_sso_profiles_use_the_cli_token_cache(aws_tool, responder, tmp_path, monkeypatch):
    env = sso_env(tmp_path, responder)
    cache_token(env["HOME"], "corp", "corp-access-token-do-not-log")
    cache_token(env["HOME"], LEGACY_URL, "legacy-access-token-do-not-log")
    responder.sso_tokens = {"corp-access-token-do-not-log", "legacy-access-token-do-not-log"}

    got, r = creds(aws_tool, dict(env, AWS_PROFILE="sso-new"), hashes=True)
    assert got["access_key"] == "ASIASSO000000001" and got["region"] == "eu-west-1"
    assert got["secret_sha256"] == sha256("sso-secret-1-do-not-log")
    assert got["token_sha256"] == sha256("sso-token-1-do-not-log")
    assert got["expires_in"] > 10 ** 8
    assert [line["source"] for line in logs(r) if line["event"] == "aws_credentials"] == ["sso"]
    (call,) = portal_calls(responder)
    assert call["query"] == {"account_id": ["111122223333"], "role_name": ["Trainer"]}
    assert call["headers"]["x-amz-sso_bearer_token"] == "corp-access-token-do-not-log"
    assert "authorization" not in call["headers"]  # unsigned: the token is the proof
    assert "do-not-log" not in r.stdout + r.stderr

    # A legacy profile: the cache entry is named after the start URL.
    got, _ = creds(aws_tool, dict(env, AWS_PROFILE="sso-legacy"))
    assert got["access_key"] == "ASIASSO000000002"
    call = portal_calls(responder)[-1]
    assert call["query"] == {"account_id": ["444455556666"], "role_name": ["Reader"]}
    assert call["headers"]["x-amz-sso_bearer_token"] == "legacy-access-token-do-not-log"

    # boto3 reads the same cache and sends the portal the same request.
    for profile in ("sso-new", "sso-legacy"):
        ours = portal_calls(responder)[0 if profile == "sso-new" else 1]
        frozen = boto3_credentials(monkeypatch, dict(env, AWS_PROFILE=profile), profile)
        theirs = portal_calls(responder)[-1]
        assert frozen.access_key == f"ASIASSO{responder.sso_calls:09d}"
        assert theirs["query"] == ours["query"]
        assert theirs["headers"]["x-amz-sso_bearer_token"] == \
            ours["headers"]["x-amz-sso_bearer_token"]

    # An SSO profile lends its credentials to a role: AssumeRole is signed with them.
    got, _ = creds(aws_tool, dict(env, AWS_PROFILE="sso-as-source"))
    (sts,) = [q for q in responder.recorded("POST", "/")]
    assert f"Credential=ASIASSO{responder.sso_calls:09d}/" in sts["headers"]["authorization"]
    assert got["access_key"] == "ASIASTS000000001"


def test_sso_refusals_say_what_to_do(aws_tool, responder, tmp_path):
    env = sso_env(tmp_path, responder)

    def refused(profile, code=2):
        r = tool(aws_tool, "credentials", env=dict(env, AWS_PROFILE=profile))
        assert r.returncode == code, (profile, r.stderr)
        assert "do-not-log" not in r.stdout + r.stderr
        return r.stderr.strip().splitlines()[-1]

    # No token yet, and an expired one: log in again; the portal is not asked.
    line = refused("sso-new")
    assert "no SSO token for sso-session corp" in line
    assert "run `aws sso login --profile sso-new`" in line
    cache_token(env["HOME"], "corp", "old-token-do-not-log", expires_in_s=-60)
    line = refused("sso-new")
    assert "expired at" in line and "aws sso login --profile sso-new" in line
    assert portal_calls(responder) == []

    # The portal refuses a token it does not know (signed out) and a role not granted.
    cache_token(env["HOME"], "corp", "revoked-token-do-not-log")
    line = refused("sso-new")
    assert "HTTP 401" in line and "aws sso login --profile sso-new" in line
    responder.sso_tokens = {"revoked-token-do-not-log"}
    responder.sso_roles = {("999999999999", "Other")}
    assert "HTTP 403: No access" in refused("sso-new")
    # The portal unreachable after the retries: 84, which Batch retries.
    responder.sso_roles = None
    responder.faults = [503] * 5
    assert "failed after 5 attempts" in refused("sso-new", code=84)

    # Configurations botocore refuses too.
    assert "lacks sso_region" in refused("sso-partial")
    assert "sso_region is us-west-2 in the profile but eu-central-1 in its sso-session" in \
        refused("sso-mismatch")
    assert "no [sso-session elsewhere] section" in refused("sso-nosession")

    # An MFA prompt stays refused, before anything is asked.
    before = len(responder.requests)
    line = refused("with-mfa")
    assert "mfa_serial asks for an MFA code typed at a prompt" in line
    assert len(responder.requests) == before


def test_sso_credentials_are_fetched_again_before_they_expire(aws_tool, responder, tmp_path):
    env = sso_env(tmp_path, responder, AWS_PROFILE="sso-new", AWS_REGION=REGION,
                  AWS_ENDPOINT_URL=responder.url, SFN_TASK_TOKEN="tok-SSO",
                  RUNNER_SFN_HEARTBEAT_S="1")
    cache_token(env["HOME"], "corp", "corp-access-token-do-not-log")
    responder.sso_tokens = {"corp-access-token-do-not-log"}
    responder.sso_expiration_ms = int((time.time() + 120) * 1000)  # within the margin
    r = tool(aws_tool, "sfn", 0, "", "{}", 2.5, env=env)
    assert r.returncode == 0, r.stderr
    sent = [q for q in responder.recorded("POST", "/")]
    assert len(sent) == 3 and len(portal_calls(responder)) == 3
    for n, req in enumerate(sent, 1):  # each request signed with that call's credentials
        assert req["headers"]["x-amz-security-token"] == f"sso-token-{n}-do-not-log"
        assert sigv4_valid(req, f"sso-secret-{n}-do-not-log", REGION, "states")[0]
    assert "do-not-log" not in r.stdout + r.stderr


def cache_renewable_token(home, token, expires_in_s, refresh="refresh-1-do-not-log",
                          registration_in_s=90 * 86400):
    """A cache entry as `aws sso login` writes it for an sso-session: the access token
    with the refresh token and client registration botocore renews it with."""
    path = cache_token(home, "corp", token, expires_in_s)
    entry = json.loads(path.read_text())
    entry.update(refreshToken=refresh, clientId="client-id-1",
                 clientSecret="client-secret-do-not-log",
                 registrationExpiresAt=time.strftime(
                     "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + registration_in_s)))
    path.write_text(json.dumps(entry))
    return path


def oidc_calls(responder):
    return [json.loads(r["body"]) for r in responder.recorded("POST", "/token")]


def test_sso_token_is_renewed_as_botocore_renews_it(aws_tool, responder, tmp_path, monkeypatch):
    env = sso_env(tmp_path, responder, AWS_ENDPOINT_URL_SSO_OIDC=responder.url)
    # Ten minutes left: inside botocore's 15-minute window, so it is renewed first, and
    # the portal only takes the renewed token.
    path = cache_renewable_token(env["HOME"], "old-access-do-not-log", 600)
    responder.oidc_clients = {"refresh-1-do-not-log": ("client-id-1", "client-secret-do-not-log")}
    got, r = creds(aws_tool, dict(env, AWS_PROFILE="sso-new"))
    assert got["access_key"] == "ASIASSO000000001", r.stderr
    (sent,) = oidc_calls(responder)
    assert sent == {"grantType": "refresh_token", "clientId": "client-id-1",
                    "clientSecret": "client-secret-do-not-log",
                    "refreshToken": "refresh-1-do-not-log"}
    (req,) = responder.recorded("POST", "/token")
    assert "authorization" not in req["headers"]  # unsigned, as botocore sends it
    assert portal_calls(responder)[-1]["headers"]["x-amz-sso_bearer_token"] == \
        "renewed-access-1-do-not-log"
    assert [line["event"] for line in logs(r)].count("sso_token_renewed") == 1
    assert "do-not-log" not in r.stdout + r.stderr

    # The cache holds what botocore writes after a renewal, in a file only its owner reads.
    ours = json.loads(path.read_text())
    assert ours["accessToken"] == "renewed-access-1-do-not-log"
    assert ours["refreshToken"] == "renewed-refresh-1-do-not-log"
    assert abs(aws_time(ours["expiresAt"]) - (time.time() + 28800)) < 60
    assert (ours["clientId"], ours["startUrl"], ours["region"]) == \
        ("client-id-1", START_URL, "eu-central-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left

    # boto3 reads the renewed entry as it is (valid for hours: no second renewal) ...
    boto3_credentials(monkeypatch, dict(env, AWS_PROFILE="sso-new"), "sso-new")
    assert len(oidc_calls(responder)) == 1
    assert portal_calls(responder)[-1]["headers"]["x-amz-sso_bearer_token"] == \
        "renewed-access-1-do-not-log"
    # ... and, given an entry close to expiry, renews it with the same request and
    # writes the same fields the runner wrote.
    cache_renewable_token(env["HOME"], "old-access-do-not-log", 600,
                          refresh="renewed-refresh-1-do-not-log")
    boto3_credentials(monkeypatch, dict(env, AWS_PROFILE="sso-new"), "sso-new")
    assert oidc_calls(responder)[-1] == dict(sent, refreshToken="renewed-refresh-1-do-not-log")
    theirs = json.loads(path.read_text())
    assert sorted(theirs) == sorted(ours)
    assert theirs["accessToken"] == "renewed-access-2-do-not-log"


def aws_time(text):
    import calendar
    return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


def test_sso_token_renewal_failures(aws_tool, responder, tmp_path):
    env = sso_env(tmp_path, responder, AWS_ENDPOINT_URL_SSO_OIDC=responder.url,
                  AWS_PROFILE="sso-new")

    def attempt():
        r = tool(aws_tool, "credentials", env=env)
        assert "do-not-log" not in r.stdout + r.stderr
        return r

    # Expired, and the refresh token refused: log in again, naming why.
    cache_renewable_token(env["HOME"], "old-access-do-not-log", -60)
    r = attempt()
    assert r.returncode == 2, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "expired at" in line and "could not be renewed" in line
    assert "HTTP 400 invalid_grant: Refresh token has expired" in line
    assert "run `aws sso login --profile sso-new`" in line
    assert portal_calls(responder) == []

    # An expired registration is not sent at all.
    cache_renewable_token(env["HOME"], "old-access-do-not-log", -60, registration_in_s=-60)
    before = len(oidc_calls(responder))
    r = attempt()
    assert r.returncode == 2 and "the client registration expired at" in r.stderr
    assert len(oidc_calls(responder)) == before

    # Still valid for a few minutes and the renewal refused: the old token is used while
    # it lasts (as botocore does), with one warning.
    cache_renewable_token(env["HOME"], "old-access-do-not-log", 300)
    responder.sso_tokens = {"old-access-do-not-log"}
    r = attempt()
    assert r.returncode == 0, r.stderr
    assert [line["event"] for line in logs(r)].count("sso_token_not_renewed") == 1
    assert portal_calls(responder)[-1]["headers"]["x-amz-sso_bearer_token"] == \
        "old-access-do-not-log"

    # Expired but renewable: renewed, and the job goes on.
    responder.oidc_clients = {"refresh-1-do-not-log": ("client-id-1", "client-secret-do-not-log")}
    cache_renewable_token(env["HOME"], "old-access-do-not-log", -60)
    r = attempt()
    assert r.returncode == 0, r.stderr
    assert portal_calls(responder)[-1]["headers"]["x-amz-sso_bearer_token"] == \
        "renewed-access-1-do-not-log"

    # A legacy profile has no refresh token: expired means log in again, nothing sent.
    env["AWS_PROFILE"] = "sso-legacy"
    cache_token(env["HOME"], LEGACY_URL, "legacy-do-not-log", expires_in_s=-60)
    before = len(oidc_calls(responder))
    r = attempt()
    assert r.returncode == 2 and "aws sso login --profile sso-legacy" in r.stderr
    assert len(oidc_calls(responder)) == before


# ---- the runner binary ----

def test_runner_writes_to_s3_with_process_credentials(runner_bin, moto, tmp_path):
    """--check's write check (a multipart upload started and aborted at moto) gets its
    credentials from the credential_process (the environment has none, so without it
    the check would exit 2); a failing process ends the run with 2 and an exit line
    that names it. (moto takes any signature: test_aws_metadata-style signature checks
    with the process's secret are in test_credential_process_runs_again_before_expiration.)"""
    from conftest import exit_line, run
    from test_aws_moto import REGION as MOTO_REGION, SECRET_KEY, client
    bucket = "runner-profiles-process"
    client(moto, "s3").create_bucket(Bucket=bucket, CreateBucketConfiguration={
        "LocationConstraint": MOTO_REGION})
    path = script(tmp_path / "moto-creds.sh", f"""\
echo run >> "$COUNT_FILE"
printf '%s' '{{"Version": 1, "AccessKeyId": "testing", "SecretAccessKey": "{SECRET_KEY}"}}'
""")
    env = process_env(tmp_path, f"[profile moto]\ncredential_process = {path}\n",
                      AWS_PROFILE="moto", AWS_DEFAULT_REGION=MOTO_REGION,
                      AWS_ENDPOINT_URL=moto, RUNNER_WORK_DIR=tmp_path / "work")
    r = run(runner_bin, "--check", "--output", f"s3://{bucket}/run", env=env, cwd=tmp_path)
    line = exit_line(r.stdout + r.stderr)
    assert r.returncode == 0, line
    assert runs(tmp_path) >= 1

    script(path, 'echo "helper: not signed in" >&2\nexit 1\n')
    r = run(runner_bin, "--check", "--output", f"s3://{bucket}/run", env=env, cwd=tmp_path)
    line = exit_line(r.stdout + r.stderr)
    assert r.returncode == 2 and line["name"] == "USAGE", line
    assert f"credential_process {path}: exited with status 1" in line["reason"]
    assert "helper: not signed in" in r.stderr
