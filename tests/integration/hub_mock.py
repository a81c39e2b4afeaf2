"""A local stand-in for the Hugging Face Hub, speaking the resolve protocol as
huggingface_hub expects it (the real Hub is unreachable from the tests):

- HEAD/GET {endpoint}/{repo}/resolve/{revision}/{file}, revision a branch, a tag,
  refs/pr/N (percent-encoded, as huggingface_hub sends it) or a commit;
- a small file answers 200 with X-Repo-Commit, ETag "<git blob id>" and its length;
- an LFS file (*.safetensors, *.bin) answers 302 to a second server, the "CDN", on
  another host name (localhost rather than 127.0.0.1), with X-Repo-Commit,
  X-Linked-Etag "<sha256>", X-Linked-Size; the CDN serves Range requests (206);
- a renamed repo answers 307 with a relative Location to its new name;
- errors carry X-Error-Code: RepoNotFound (401), GatedRepo (401 anonymous, 403 with a
  token that has not accepted the licence), RevisionNotFound (404), EntryNotFound (404);
- injected faults: `fail_next` (N answers 503), `drop_after` (the CDN closes the body
  after N bytes, once per entry), `corrupt_next` (N bodies with one byte flipped), `delay`
  (seconds per 64 KiB chunk of a CDN body);
- every request is recorded (method, path, Authorization, Range, host) for the tests.
"""
import hashlib
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def git_blob_id(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(name):
    return name.endswith((".safetensors", ".bin", ".h5", ".msgpack"))


class Repo:
    def __init__(self, files, gated=False, revisions=None):
        # files: {filename: bytes} of the main branch; revisions: {name: {filename: bytes}}
        self.gated = gated
        self.commits = {}  # commit -> {filename: bytes}
        self.refs = {}     # branch/tag/refs/pr/N -> commit
        self.add_revision("main", files)
        for name, more in (revisions or {}).items():
            self.add_revision(name, more)

    def add_revision(self, name, files):
        commit = hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest())
                                          for k, v in files.items())).encode()
                              + name.encode()).hexdigest()
        self.commits[commit] = dict(files)
        self.refs[name] = commit
        return commit


class MockHub:
    def __init__(self, token="hf_mock_token_123"):
        self.repos = {}
        self.renamed = {}  # old id -> new id
        self.token = token
        self.requests = []
        self.reset()
        self.lock = threading.Lock()
        self.sha_memo = {}  # id(bytes) -> (bytes, sha256): hashing 440 MB per request would time the mock
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.cdn.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.cdn_base = f"http://localhost:{self.cdn.server_address[1]}"
        for srv in (self.server, self.cdn):
            threading.Thread(target=srv.serve_forever, daemon=True).start()

    def reset(self):
        """No injected faults and an empty request log (between tests)."""
        self.requests.clear()
        self.fail_next = 0
        self.drop_after = []   # byte counts: each entry breaks one CDN body
        self.corrupt_next = 0
        self.delay = 0.0

    def close(self):
        for srv in (self.server, self.cdn):
            srv.shutdown()
            srv.server_close()

    def add(self, repo_id, files, **kw):
        self.repos[repo_id] = Repo(files, **kw)
        return self.repos[repo_id]

    def cdn_requests(self):
        return [r for r in self.requests if r["cdn"]]

    # ---- protocol ----

    def _send(self, h, status, headers=None, body=b"", head=False):
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, str(v))
        if "Content-Length" not in (headers or {}):
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head and body:
            h.wfile.write(body)

    def _error(self, h, status, code, message, head):
        body = ('{"error": "%s"}' % message).encode()
        self._send(h, status, {"X-Error-Code": code, "X-Error-Message": message,
                               "Content-Type": "application/json"}, body, head)

    def _handle(self, h, head):
        cdn = h.server is self.cdn
        auth = h.headers.get("Authorization")
        with self.lock:
            self.requests.append({"method": h.command, "path": h.path, "cdn": cdn,
                                  "auth": auth, "range": h.headers.get("Range")})
            if self.fail_next > 0:
                self.fail_next -= 1
                self._send(h, 503, {"Content-Type": "text/plain"}, b"busy", head)
                return
        if cdn:
            return self._cdn(h, head)
        path = urllib.parse.urlsplit(h.path).path
        parts = path.lstrip("/").split("/")
        if len(parts) >= 4 and parts[1] == "resolve":  # a legacy org-less id
            parts = [""] + parts
        if len(parts) < 5 or parts[2] != "resolve":
            return self._error(h, 404, "RepoNotFound", "not a resolve URL", head)
        repo_id = (parts[0] + "/" + parts[1]).lstrip("/")
        revision = urllib.parse.unquote(parts[3])
        filename = urllib.parse.unquote("/".join(parts[4:]))
        if repo_id in self.renamed:
            new = self.renamed[repo_id]
            rest = "/".join(parts[2:])
            return self._send(h, 307, {"Location": f"/{new}/{rest}"}, b"", head)
        repo = self.repos.get(repo_id)
        token_ok = auth == f"Bearer {self.token}"
        if repo is None:
            return self._error(h, 401, "RepoNotFound", "Repository not found", head)
        if repo.gated and not token_ok:
            status = 403 if auth else 401
            return self._error(h, status, "GatedRepo", "Access to this repo is restricted", head)
        commit = revision if revision in repo.commits else repo.refs.get(revision)
        if commit is None:
            return self._error(h, 404, "RevisionNotFound", "Invalid rev id: " + revision, head)
        files = repo.commits[commit]
        if filename not in files:
            return self._error(h, 404, "EntryNotFound", filename + " does not exist", head)
        data = files[filename]
        headers = {"X-Repo-Commit": commit}
        if is_lfs(filename):
            sha = self.sha256(data)
            headers.update({"X-Linked-Etag": f'"{sha}"', "X-Linked-Size": len(data),
                            "ETag": f'"{git_blob_id(sha.encode())}"',
                            "Location": f"{self.cdn_base}/blobs/{sha}?sig=abc"})
            return self._send(h, 302, headers, b"", head)
        headers["ETag"] = f'"{git_blob_id(data)}"'
        headers["Content-Type"] = "application/octet-stream"
        self._send(h, 200, headers, data, head)

    def sha256(self, data):
        hit = self.sha_memo.get(id(data))
        if hit is None or hit[0] is not data:
            hit = self.sha_memo[id(data)] = (data, hashlib.sha256(data).hexdigest())
        return hit[1]

    def _blob(self, sha):
        for repo in self.repos.values():
            for files in repo.commits.values():
                for data in files.values():
                    if self.sha256(data) == sha:
                        return data
        return None

    def _cdn(self, h, head):
        sha = urllib.parse.urlsplit(h.path).path.rsplit("/", 1)[-1]
        data = self._blob(sha)
        if data is None:
            return self._send(h, 404, {}, b"no such blob", head)
        start = 0
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(data):
                return self._send(h, 416, {"Content-Range": f"bytes */{len(data)}"}, b"", head)
        body = data[start:]
        with self.lock:
            if self.corrupt_next > 0 and not head:
                self.corrupt_next -= 1
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            drop = self.drop_after.pop(0) if self.drop_after and not head else None
        headers = {"Content-Length": len(body), "ETag": f'"{sha}"',
                   "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        status = 200
        if start:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, str(v))
        h.end_headers()
        if head:
            return
        sent = 0
        chunk = 1 << 16
        try:
            while sent < len(body):
                piece = body[sent:sent + chunk]
                if drop is not None and sent + len(piece) > drop:
                    h.wfile.write(piece[:max(0, drop - sent)])
                    h.wfile.flush()
                    h.close_connection = True
                    h.connection.shutdown(2)
                    return
                h.wfile.write(piece)
                sent += len(piece)
                if self.delay:
                    time.sleep(self.delay)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
