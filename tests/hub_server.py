"""A local stand-in for the Hugging Face Hub HTTP API, for the hub tests.

It implements what `huggingface_hub` (0.23 to 2.x) calls for `snapshot_download`,
`create_repo` and `upload_folder` with regular (non-LFS) files:

- `GET /api/models/{repo}[/revision/{rev}]`: model info with `sha` and `siblings`;
- `GET /api/models/{repo}/tree/{rev}`: the file listing (newer clients);
- `HEAD|GET /{repo}/resolve/{rev}/{file}`: ETag, X-Repo-Commit, Content-Length;
- `POST /api/repos/create`, `POST /api/models/{repo}/preupload/{rev}` (always
  "regular"), `POST /api/models/{repo}/commit/{rev}` (NDJSON, base64 files).

Errors carry the Hub's `X-Error-Code` header (RepoNotFound, RevisionNotFound,
EntryNotFound) so that the client raises its usual exceptions.
"""

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

_REPO = r"(?P<repo>[^/]+/[^/]+)"
_ROUTES = [
    ("GET", re.compile(rf"^/api/models/{_REPO}(?:/revision/(?P<rev>[^/]+))?$"), "info"),
    (
        "GET",
        re.compile(rf"^/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?P<sub>/.*)?$"),
        "tree",
    ),
    ("HEAD", re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$"), "resolve"),
    ("GET", re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)$"), "resolve"),
    ("POST", re.compile(r"^/api/repos/create$"), "create"),
    (
        "POST",
        re.compile(rf"^/api/models/{_REPO}/preupload/(?P<rev>[^/]+)$"),
        "preupload",
    ),
    (
        "POST",
        re.compile(rf"^/api/models/{_REPO}/commit/(?P<rev>[^/]+)$"),
        "commit_route",
    ),
]


def _blob_id(data):
    """The git blob id of `data` (what the Hub sends as a regular file's ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """Serves in-memory repositories on 127.0.0.1 (random port) in a thread.

    Attributes:
        repos: `{repo_id: {"sha": str, "files": {path: bytes}}}`.
        requests: `(method, path)` of every request, in order.
        broken: `{(repo_id, path)}`: files listed but answered with 404.
    """

    def __init__(self):
        self.repos = {}
        self.requests = []
        self.broken = set()
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                hub._dispatch(self, "HEAD")

            def do_GET(self):
                hub._dispatch(self, "GET")

            def do_POST(self):
                hub._dispatch(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def put(self, repo_id, files):
        """Creates or replaces `repo_id` with `files` (`{path: bytes}`) in one commit."""
        with self._lock:
            self.repos[repo_id] = {"sha": "0" * 40, "files": {}}
            self._commit(repo_id, files, ())

    def file_requests(self):
        """The requests for file contents or metadata (`/resolve/`)."""
        return [r for r in self.requests if "/resolve/" in r[1]]

    # --- internals ---

    def _commit(self, repo_id, added, deleted):
        repo = self.repos[repo_id]
        repo["files"].update(added)
        for path in deleted:
            repo["files"].pop(path, None)
        digest = hashlib.sha1(repo["sha"].encode())
        for path in sorted(repo["files"]):
            digest.update(path.encode() + b"\0" + repo["files"][path])
        repo["sha"] = digest.hexdigest()
        return repo["sha"]

    def _dispatch(self, handler, method):
        url = urlsplit(handler.path)
        path = unquote(url.path)
        self.requests.append((method, path))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        for verb, pattern, name in _ROUTES:
            match = pattern.match(path)
            if verb == method and match:
                with self._lock:
                    status, headers, payload = getattr(self, "_" + name)(
                        handler, **match.groupdict(), body=body
                    )
                break
        else:
            status, headers, payload = (
                404,
                {},
                {"error": f"Not served: {method} {path}"},
            )
        self._send(handler, method, status, headers, payload)

    @staticmethod
    def _send(handler, method, status, headers, payload):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        handler.send_response(status)
        if not isinstance(payload, bytes):
            handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(data)

    def _lookup(self, repo_id, rev):
        """`(repo, None)` or `(None, error response)`."""
        repo = self.repos.get(repo_id)
        if repo is None:
            return None, (
                404,
                {"X-Error-Code": "RepoNotFound"},
                {"error": "Repository not found"},
            )
        if rev not in (None, "main", repo["sha"]):
            headers = {"X-Error-Code": "RevisionNotFound"}
            return None, (404, headers, {"error": f"Invalid rev id: {rev}"})
        return repo, None

    def _info(self, handler, repo, rev=None, body=b""):
        found, error = self._lookup(repo, rev)
        if error:
            return error
        siblings = [
            {"rfilename": p, "size": len(d)} for p, d in sorted(found["files"].items())
        ]
        info = {"id": repo, "modelId": repo, "sha": found["sha"], "private": False}
        return (
            200,
            {},
            {**info, "siblings": siblings, "tags": [], "downloads": 0, "likes": 0},
        )

    def _tree(self, handler, repo, rev, sub=None, body=b""):
        found, error = self._lookup(repo, rev)
        if error:
            return error
        entries = [
            {"type": "file", "path": p, "size": len(d), "oid": _blob_id(d)}
            for p, d in sorted(found["files"].items())
        ]
        return 200, {}, entries

    def _resolve(self, handler, repo, rev, file, body=b""):
        found, error = self._lookup(repo, rev)
        if error:
            return error
        commit = {"X-Repo-Commit": found["sha"]}
        if file not in found["files"] or (repo, file) in self.broken:
            return (
                404,
                {**commit, "X-Error-Code": "EntryNotFound"},
                {"error": "Entry not found"},
            )
        data = found["files"][file]
        return 200, {**commit, "ETag": f'"{_blob_id(data)}"'}, data

    def _create(self, handler, body):
        request = json.loads(body)
        repo = f"{request.get('organization')}/{request['name']}"
        if repo in self.repos:
            return (
                409,
                {},
                {"error": "You already created this model repo", "url": repo},
            )
        self.repos[repo] = {"sha": "0" * 40, "files": {}}
        return 200, {}, {"url": f"{self.url}/{repo}", "name": repo}

    def _preupload(self, handler, repo, rev, body):
        found, error = self._lookup(repo, rev)
        if error:
            return error
        files = [
            {
                "path": f["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": None,
            }
            for f in json.loads(body)["files"]
        ]
        return 200, {}, {"files": files, "commitOid": found["sha"]}

    def _commit_route(self, handler, repo, rev, body):
        found, error = self._lookup(repo, rev)
        if error:
            return error
        added, deleted = {}, []
        for line in body.decode().splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                added[item["value"]["path"]] = base64.b64decode(
                    item["value"]["content"]
                )
            elif item["key"] in ("deletedFile", "deletedFolder"):
                deleted.append(item["value"]["path"])
            elif item["key"] != "header":
                return 400, {}, {"error": f"FakeHub cannot store {item['key']!r} items"}
        sha = self._commit(repo, added, deleted)
        url = f"{self.url}/{repo}/commit/{sha}"
        return 200, {}, {"success": True, "commitOid": sha, "commitUrl": url}
