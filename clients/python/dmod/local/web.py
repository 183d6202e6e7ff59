"""A tiny static file server for the built web UI (clients/web/dist), bound to 127.0.0.1.

Envoy routes `/` here (everything that is not a gRPC service), so the page and its grpc-web
calls share one origin. `python -m dmod.local.web --port P [--root DIR]`.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import mimetypes
import os
import subprocess
import sys
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from dmod.local.procs import spawn, wait_for

TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".html": "text/html; charset=utf-8", ".map": "application/json", ".svg": "image/svg+xml"}
COMPRESSIBLE = {".js", ".css", ".html", ".map", ".svg", ".json"}
# grpc-web goes to this origin; presigned S3 URLs (PUT uploads, PNG hydrographs) go to the object store.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: http: https:; "
       "connect-src 'self' http: https:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
NOT_BUILT = (b"<!doctype html><meta charset=utf-8><title>DMOD</title><h1>The DMOD web UI is not built</h1>"
             b"<p>Run <code>make web</code> (or <code>cd clients/web &amp;&amp; npm ci &amp;&amp; npm run build</code>)"
             b" and reload. The gRPC / grpc-web gateway on this port works without it.</p>")


def web_root() -> Path:
    """DMOD_WEB_ROOT, else clients/web/dist of this checkout."""
    env = os.environ.get("DMOD_WEB_ROOT")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "web" / "dist"


@lru_cache(maxsize=64)
def _load(path: Path, mtime_ns: int, size: int) -> tuple[bytes, bytes, str]:
    """(body, gzipped body or b'', etag) of one file version."""
    body = path.read_bytes()
    packed = gzip.compress(body, 6) if path.suffix in COMPRESSIBLE and size > 512 else b""
    return body, packed, '"' + hashlib.sha256(body).hexdigest()[:20] + '"'


class Handler(BaseHTTPRequestHandler):
    server_version = "dmod-web"
    sys_version = ""
    root: Path = web_root()

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _serve(self, head: bool) -> None:
        rel = self.path.split("?", 1)[0].split("#", 1)[0].lstrip("/") or "index.html"
        root = self.root.resolve()
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8", head=head)
        if not target.is_file():
            if rel == "index.html":
                return self._send(HTTPStatus.SERVICE_UNAVAILABLE, NOT_BUILT, TYPES[".html"], head=head)
            return self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8", head=head)
        stat = target.stat()
        body, packed, etag = _load(target, stat.st_mtime_ns, stat.st_size)
        if self.headers.get("If-None-Match") == etag:
            return self._send(HTTPStatus.NOT_MODIFIED, b"", None, head=True, etag=etag)
        ctype = TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        gzip_ok = packed and "gzip" in self.headers.get("Accept-Encoding", "")
        self._send(HTTPStatus.OK, packed if gzip_ok else body, ctype, head=head, etag=etag,
                   encoding="gzip" if gzip_ok else None)

    def _send(self, status: HTTPStatus, body: bytes, ctype: str | None, head: bool, etag: str | None = None,
              encoding: str | None = None) -> None:
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        # Unhashed file names: always revalidate (cheap with the ETag).
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Vary", "Accept-Encoding")
        if etag:
            self.send_header("ETag", etag)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        if args and str(args[1] if len(args) > 1 else "").startswith(("4", "5")):
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


def serve(port: int, root: Path, host: str = "127.0.0.1") -> None:
    handler = type("RootedHandler", (Handler,), {"root": root})
    with ThreadingHTTPServer((host, port), handler) as server:
        server.daemon_threads = True
        server.serve_forever()


def start_web(log_dir: Path, port: int, root: Path | None = None, timeout: float = 15) -> subprocess.Popen:
    root = root or web_root()
    proc = spawn([sys.executable, "-m", "dmod.local.web", "--port", str(port), "--root", str(root)],
                 log_dir / "web.log")
    # Ask for our own server header: an open port alone may belong to another process.
    wait_for(lambda: _answers(port), timeout, "web", proc, log_dir / "web.log")
    return proc


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("HEAD", "/")
        return conn.getresponse().getheader("Server", "").startswith(Handler.server_version)
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    try:
        serve(args.port, args.root or web_root(), args.host)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
