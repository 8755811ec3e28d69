"""Local stand-ins for the hosts of published checkpoints, on 127.0.0.1.

- `FileServer`: a plain file server (GitHub Releases, a mirror) that honours
  Range requests and can cut a transfer mid-file, answer 404 or serve an HTML
  page instead of the file;
- `DriveServer`: a Google-Drive-like server: `uc?id=ID` answers files above
  `confirm_above` bytes with the virus-scan confirmation page (the
  `download-form` of today's Drive), the form's target serves the file with a
  Content-Disposition, and ids in `quota` get Drive's quota page.

Each server runs in a daemon thread and shuts itself down after `lifetime_s`
even if a test forgets to stop it. `route_drive_hosts` points the Google
hosts at a `DriveServer` for the `requests` library (which gdown uses).
"""

import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_RANGE = re.compile(r"^bytes=(\d+)-$")
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>no</body></html>"
)


class FileServer:
    """Serves `files` (`{path: bytes}`, paths without a leading slash).

    Attributes:
        requests: `(method, path, Range header or None)` of every request.
        cut_at: `{path: n}`: announce the whole length, then close the
            connection at the file's byte `n` (every time, also for a Range
            request, until the entry is removed).
        html: paths answered with an HTML page (`html_type`: its Content-Type).
    """

    def __init__(self, files=None, lifetime_s=120):
        self.files = dict(files or {})
        self.requests = []
        self.cut_at = {}
        self.html = set()
        self.html_type = "text/html; charset=utf-8"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.requests.append(
                    (self.command, self.path, self.headers.get("Range"))
                )
                server.handle(self)

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), daemon=True
        )
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True
        self._stopped = False

    @property
    def port(self):
        return self._httpd.server_address[1]

    def url(self, path):
        return f"http://127.0.0.1:{self.port}/{path}"

    def start(self):
        self._thread.start()
        self._timer.start()
        return self

    def stop(self):
        if not self._stopped:
            self._stopped = True
            self._timer.cancel()
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def gets(self, path):
        """How many GET requests `path` received."""
        return sum(1 for m, p, _ in self.requests if m == "GET" and p == "/" + path)

    def handle(self, handler):
        path = urlsplit(handler.path).path.lstrip("/")
        if path in self.html:
            return self.send(handler, 200, HTML_PAGE, self.html_type)
        if path not in self.files:
            return self.send(handler, 404, b"not found", "text/plain")
        data = self.files[path]
        match = _RANGE.match(handler.headers.get("Range") or "")
        start = int(match.group(1)) if match else 0
        if start >= len(data) and match:
            return self.send(handler, 416, b"", "text/plain")
        headers = {
            "ETag": f'"{len(data)}-{hash(data) & 0xFFFF}"',
            "Accept-Ranges": "bytes",
        }
        if match:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        cut = self.cut_at.get(path)
        self.send(handler, 206 if match else 200, body, "application/octet-stream",
                  headers, None if cut is None else max(0, cut - start))  # fmt: skip

    @staticmethod
    def send(handler, code, body, content_type, headers=None, cut_after=None):
        handler.send_response(code)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        if cut_after is not None:
            handler.wfile.write(body[:cut_after])
            handler.wfile.flush()
            handler.close_connection = True
            return
        handler.wfile.write(body)


class DriveServer(FileServer):
    """A Google-Drive-like server for `files_by_id` (`{id: (name, bytes)}`)."""

    def __init__(self, files_by_id, confirm_above=0, lifetime_s=120):
        super().__init__(lifetime_s=lifetime_s)
        self.files_by_id = dict(files_by_id)
        self.confirm_above = confirm_above
        self.quota = set()
        self.tokens = set()

    def handle(self, handler):
        parts = urlsplit(handler.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        file_id = query.get("id")
        if file_id not in self.files_by_id:
            return self.send(handler, 404, b"<html>not found</html>", "text/html")
        name, data = self.files_by_id[file_id]
        if file_id in self.quota:
            page = (
                '<html><body>\n<p class="uc-error-subcaption">Too many users have viewed '
                "or downloaded this file recently. Please try again later.</p>\n</body></html>"
            )
            return self.send(handler, 200, page.encode(), "text/html; charset=utf-8")
        token = query.get("uuid")
        if parts.path == "/uc" and len(data) > self.confirm_above:
            token = uuid.uuid4().hex
            self.tokens.add(token)
            form = (
                '<form id="download-form" action="https://drive.usercontent.google.com/download" '
                f'method="get"><input type="hidden" name="id" value="{file_id}">'
                '<input type="hidden" name="export" value="download">'
                '<input type="hidden" name="confirm" value="t">'
                f'<input type="hidden" name="uuid" value="{token}"></form>'
            )
            page = (
                "<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning"
                f"</title></head><body>\n{form}\n</body></html>"
            )
            return self.send(handler, 200, page.encode(), "text/html; charset=utf-8")
        if parts.path == "/download" and token not in self.tokens:
            return self.send(handler, 403, b"<html>no token</html>", "text/html")
        disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
        self.send(handler, 200, data, "application/octet-stream", disposition)


DRIVE_HOSTS = ("drive.google.com", "docs.google.com", "drive.usercontent.google.com")


def route_drive_hosts(monkeypatch, server):
    """Sends `requests`' calls to the Google Drive hosts to `server` (plain http)."""
    import requests.adapters

    original = requests.adapters.HTTPAdapter.send

    def send(adapter, request, *args, **kwargs):
        parts = urlsplit(request.url)
        if parts.hostname in DRIVE_HOSTS:
            request.url = parts._replace(
                scheme="http", netloc=f"127.0.0.1:{server.port}"
            ).geturl()
        return original(adapter, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
