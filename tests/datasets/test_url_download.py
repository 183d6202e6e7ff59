"""url_download.fetch against a local HTTP server: every byte hashed and written in order, with
more blocks than buffers (each buffer reused many times), and short bodies rejected."""
from __future__ import annotations

import hashlib
import http.server
import os
import threading

import pytest

from dmod import url_download


@pytest.fixture
def server():
    body = {"data": b""}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            data = body["data"]
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for i in range(0, len(data), 1 << 20):  # in pieces, as a real server streams
                self.wfile.write(data[i:i + (1 << 20)])

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield body, f"http://127.0.0.1:{httpd.server_address[1]}/object"
    httpd.shutdown()


def test_fetch_hashes_and_writes_every_block_in_order(server, tmp_path):
    body, url = server
    size = url_download.BLOCK * url_download.BUFFERS * 3 + 12345  # buffers reused, a short last block
    body["data"] = os.urandom(size)
    seen = []
    digest = url_download.fetch(url, tmp_path / "out.bin", size, progress=lambda done, total: seen.append(done))
    assert digest == hashlib.sha256(body["data"]).hexdigest()
    assert (tmp_path / "out.bin").read_bytes() == body["data"]
    assert seen[-1] == size and seen == sorted(seen)


def test_fetch_rejects_a_body_of_the_wrong_size(server, tmp_path):
    body, url = server
    body["data"] = os.urandom(1000)
    with pytest.raises(url_download.UrlFetchFailed, match="expected 1001"):
        url_download.fetch(url, tmp_path / "out.bin", 1001)
