"""A local HTTP responder for the AWS endpoints that have no emulator.

It plays, on one loopback port:
  - EC2 IMDSv2: PUT /latest/api/token, then GETs with the token:
    /latest/meta-data/spot/instance-action (404 until `spot_notice` is set) and
    /latest/meta-data/iam/security-credentials/[role];
  - ECS container credentials: GET /creds/... (checks Authorization when
    `auth_token` is set);
  - ECS task metadata v4: GET /v4/<id> (container) and /v4/<id>/task;
  - JSON-protocol services (Step Functions SendTask*, Secrets Manager): POST /,
    answered from `json_answers` by X-Amz-Target;
  - STS AssumeRole / AssumeRoleWithWebIdentity: a form POST to /, answered with
    fresh credentials "ASIASTS00000000N" (N counts the calls), or with `sts_error`
    = (status, code) when set.
  - IAM Identity Center (SSO) GetRoleCredentials: GET /federation/credentials
    ?account_id=&role_name= with x-amz-sso_bearer_token one of `sso_tokens`, answered
    with credentials "ASIASSO00000000N" expiring at `sso_expiration_ms`, 401 for an
    unknown token, 403 for a role not in `sso_roles` ({(account, role)}, None = any);
  - SSO OIDC CreateToken (grantType refresh_token): POST /token with a JSON body whose
    refreshToken is a key of `oidc_clients` ({refresh token: (clientId, clientSecret)}),
    answered with accessToken "renewed-access-N-do-not-log" (added to `sso_tokens`),
    expiresIn `oidc_expires_in` and a rotated refreshToken "renewed-refresh-N-do-not-log";
    400 invalid_grant for an unknown refresh token, 401 invalid_client for a wrong client;
Every request is recorded (method, path, headers, body) so tests can check what the
runner sent, signatures included. `faults` is a list consumed one per request:
an int answers that HTTP status, "drop" closes the connection without an answer.

Use from a test:  with Responder() as r: ... r.url ... r.requests
Or standalone:    python imds_responder.py --port 8080
"""
import argparse
import hashlib
import hmac
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ROLE = "runner-test-role"


class Responder:
    def __init__(self, port=0):
        self.spot_notice = None  # {"action": "terminate", "time": "..."} once marked
        self.credentials = {
            "AccessKeyId": "ASIAROLEKEY0000001",
            "SecretAccessKey": "role-secret-key-do-not-log",
            "Token": "role-session-token-do-not-log",
            "Expiration": "2099-01-01T00:00:00Z",
        }
        self.auth_token = None
        self.task = {
            "Cluster": "arn:aws:ecs:eu-west-1:111122223333:cluster/batch-ce",
            "TaskARN": "arn:aws:ecs:eu-west-1:111122223333:task/batch-ce/0123456789abcdef",
            "AvailabilityZone": "eu-west-1b",
            "Containers": [],
        }
        self.container = {
            "DockerId": "abc",
            "Name": "default",
            "LogDriver": "awslogs",
            "LogOptions": {"awslogs-group": "/aws/batch/job",
                           "awslogs-region": "eu-west-1",
                           "awslogs-stream": "runner/default/0123456789abcdef"},
        }
        self.json_answers = {}  # X-Amz-Target -> (status, body dict)
        self.sts_calls = 0
        self.sts_error = None  # (HTTP status, STS error code) to refuse every STS call
        # When set, S3 requests (signed for service s3) signed for another region get
        # 301 PermanentRedirect with x-amz-bucket-region, as S3 answers them.
        self.s3_region = None
        self.sso_tokens = set()
        self.sso_roles = None
        self.sso_calls = 0
        self.sso_expiration_ms = 4070908800000  # 2099-01-01
        self.oidc_clients = {}
        self.oidc_calls = 0
        self.oidc_expires_in = 28800
        self.faults = []
        self.requests = []
        self.tokens = set()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def recorded(self, method=None, path_prefix=""):
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r["method"] == method)
                    and r["path"].startswith(path_prefix)]


def _handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _answer(self, status, body=b"", content_type="application/json"):
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            elif isinstance(body, str):
                body = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with state.lock:
                state.requests.append({"method": self.command, "path": self.path,
                                       "headers": {k.lower(): v for k, v in self.headers.items()},
                                       "body": body})
                fault = state.faults.pop(0) if state.faults else None
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if isinstance(fault, int):
                self._answer(fault, {"__type": "InternalFailure", "message": "injected"})
                return
            path = urlsplit(self.path).path
            auth = self.headers.get("Authorization", "")
            if state.s3_region and "/s3/aws4_request" in auth:
                region = auth.split("Credential=", 1)[1].split("/")[2]
                if region != state.s3_region:
                    body = (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>"
                            b"PermanentRedirect</Code><Message>elsewhere</Message></Error>")
                    self.send_response(301)
                    self.send_header("x-amz-bucket-region", state.s3_region)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                return self._answer(200, f"object from {region}", "application/octet-stream")
            if path == "/latest/api/token" and self.command == "PUT":
                if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                    return self._answer(400, "missing TTL", "text/plain")
                token = "imds-" + uuid.uuid4().hex
                with state.lock:
                    state.tokens.add(token)
                return self._answer(200, token, "text/plain")
            if path.startswith("/latest/meta-data/"):
                with state.lock:
                    ok = self.headers.get("X-aws-ec2-metadata-token") in state.tokens
                if not ok:
                    return self._answer(401, "", "text/plain")
                if path == "/latest/meta-data/spot/instance-action":
                    if state.spot_notice is None:
                        return self._answer(404, "Not Found", "text/plain")
                    return self._answer(200, state.spot_notice)
                if path == "/latest/meta-data/iam/security-credentials/":
                    return self._answer(200, ROLE, "text/plain")
                if path == "/latest/meta-data/iam/security-credentials/" + ROLE:
                    return self._answer(200, dict(state.credentials, Code="Success"))
                return self._answer(404, "Not Found", "text/plain")
            if path == "/federation/credentials" and self.command == "GET":
                return self._sso(parse_qs(urlsplit(self.path).query))
            if path == "/token" and self.command == "POST":
                return self._oidc(body)
            if path.startswith("/creds"):
                if state.auth_token and self.headers.get("Authorization") != state.auth_token:
                    return self._answer(403, {"message": "bad authorization"})
                return self._answer(200, state.credentials)
            if path.startswith("/v4/"):
                if path.endswith("/task"):
                    return self._answer(200, dict(state.task, Containers=[state.container]))
                return self._answer(200, state.container)
            if (self.command == "POST" and path == "/"
                    and self.headers.get("Content-Type", "").startswith(
                        "application/x-www-form-urlencoded")):
                return self._sts(parse_qs(body.decode()))
            if self.command == "POST" and path == "/":
                target = self.headers.get("X-Amz-Target", "")
                status, answer = state.json_answers.get(target, (200, {}))
                return self._answer(status, answer, "application/x-amz-json-1.0")
            return self._answer(404, {"message": "no such path"})

        def _sso(self, query):
            # The portal answers errors as REST-JSON: {"message"} and x-amzn-ErrorType.
            def refuse(status, kind, message):
                body = json.dumps({"message": message}).encode()
                self.send_response(status)
                self.send_header("x-amzn-ErrorType", kind)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            token = self.headers.get("x-amz-sso_bearer_token")
            account = query.get("account_id", [""])[0]
            role = query.get("role_name", [""])[0]
            if token not in state.sso_tokens:
                return refuse(401, "UnauthorizedException", "Session token not found or invalid")
            if state.sso_roles is not None and (account, role) not in state.sso_roles:
                return refuse(403, "ForbiddenException", "No access")
            with state.lock:
                state.sso_calls += 1
                n = state.sso_calls
            return self._answer(200, {"roleCredentials": {
                "accessKeyId": f"ASIASSO{n:09d}",
                "secretAccessKey": f"sso-secret-{n}-do-not-log",
                "sessionToken": f"sso-token-{n}-do-not-log",
                "expiration": state.sso_expiration_ms}})

        def _oidc(self, body):
            # SSO OIDC answers errors as {"error", "error_description"} with the
            # exception's name in x-amzn-ErrorType.
            def refuse(status, kind, error, description):
                data = json.dumps({"error": error, "error_description": description}).encode()
                self.send_response(status)
                self.send_header("x-amzn-ErrorType", kind)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            try:
                request = json.loads(body or b"{}")
            except ValueError:
                return refuse(400, "InvalidRequestException", "invalid_request", "not JSON")
            if request.get("grantType") != "refresh_token":
                return refuse(400, "UnsupportedGrantTypeException", "unsupported_grant_type",
                              "only refresh_token here")
            with state.lock:
                client = state.oidc_clients.get(request.get("refreshToken"))
                if client is None:
                    return refuse(400, "InvalidGrantException", "invalid_grant",
                                  "Refresh token has expired")
                if client != (request.get("clientId"), request.get("clientSecret")):
                    return refuse(401, "InvalidClientException", "invalid_client",
                                  "Client authentication failed")
                state.oidc_calls += 1
                n = state.oidc_calls
                del state.oidc_clients[request["refreshToken"]]  # refresh tokens rotate
                state.oidc_clients[f"renewed-refresh-{n}-do-not-log"] = client
                state.sso_tokens.add(f"renewed-access-{n}-do-not-log")
            return self._answer(200, {"accessToken": f"renewed-access-{n}-do-not-log",
                                      "tokenType": "Bearer",
                                      "expiresIn": state.oidc_expires_in,
                                      "refreshToken": f"renewed-refresh-{n}-do-not-log"})

        def _sts(self, form):
            action = form.get("Action", [""])[0]
            if state.sts_error:
                status, code = state.sts_error
                return self._answer(status, (
                    f"<ErrorResponse xmlns='https://sts.amazonaws.com/doc/2011-06-15/'><Error>"
                    f"<Type>Sender</Type><Code>{code}</Code><Message>refused by the test"
                    f"</Message></Error><RequestId>r-1</RequestId></ErrorResponse>"),
                    "text/xml")
            with state.lock:
                state.sts_calls += 1
                n = state.sts_calls
            return self._answer(200, (
                f"<{action}Response xmlns='https://sts.amazonaws.com/doc/2011-06-15/'>"
                f"<{action}Result><Credentials>"
                f"<AccessKeyId>ASIASTS{n:09d}</AccessKeyId>"
                f"<SecretAccessKey>sts-secret-{n}-do-not-log</SecretAccessKey>"
                f"<SessionToken>sts-token-{n}-do-not-log</SessionToken>"
                f"<Expiration>2099-01-01T00:00:00Z</Expiration>"
                f"</Credentials></{action}Result></{action}Response>"), "text/xml")

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _serve

    return Handler


def sigv4_valid(request, secret_key, region, service):
    """Recompute the SigV4 signature of a recorded request with botocore's signer
    (an implementation independent of libcurl's) and compare it with the one sent."""
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = request["headers"].get("authorization", "")
    assert auth.startswith("AWS4-HMAC-SHA256 "), auth
    fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    access_key, scope = fields["Credential"].split("/", 1)
    signed = fields["SignedHeaders"].split(";")
    headers = {name: request["headers"][name] for name in signed}
    aws_request = AWSRequest(method=request["method"],
                             url="http://" + request["headers"]["host"] + request["path"],
                             headers=headers, data=request["body"])
    aws_request.context["timestamp"] = request["headers"]["x-amz-date"]
    signer_class = S3SigV4Auth if service == "s3" else SigV4Auth
    signer = signer_class(Credentials(access_key, secret_key), service, region)
    canonical = signer.canonical_request(aws_request)
    expected = signer.signature(signer.string_to_sign(aws_request, canonical), aws_request)
    return (hmac.compare_digest(expected, fields["Signature"])
            and scope.split("/")[1:3] == [region, service], signed)


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    with Responder(args.port) as r:
        print(f"listening on {r.url}", flush=True)
        r.thread.join()
