"""cogplane.netguard: what may be fetched server-side, and fetch's limits."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cogplane import netguard
from cogplane.netguard import BlockedURL, FetchError, check_url, fetch

REFUSED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "::1",
    "fe80::1",
    "fc00::1",
    "::",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::",
    "64:ff9b::a9fe:a9fe",
]


@pytest.mark.parametrize("address", REFUSED)
def test_private_loopback_link_local_and_friends_are_refused(address):
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(BlockedURL, match="not fetched"):
        check_url(f"http://{host}/x")


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_pass(address):
    host = f"[{address}]" if ":" in address else address
    assert check_url(f"https://{host}/x")


def test_allow_list_by_cidr_address_and_host_name(monkeypatch):
    assert check_url("http://127.0.0.1:9/x", ["127.0.0.0/8"])
    assert check_url("http://[::1]/x", ["::1"])
    assert check_url("http://[::ffff:127.0.0.1]/x", ["127.0.0.0/8"])
    assert check_url("http://localhost/x", ["LOCALHOST"])
    with pytest.raises(BlockedURL):
        check_url("http://169.254.169.254/x", ["127.0.0.0/8", "10.0.0.0/8"])
    # a host name is judged by every address it resolves to
    monkeypatch.setattr(
        netguard,
        "_resolve",
        lambda host, port: [netguard.ipaddress.ip_address("8.8.8.8"), netguard.ipaddress.ip_address("10.0.0.1")],
    )
    with pytest.raises(BlockedURL, match="10.0.0.1"):
        check_url("https://mixed.example/x")


def test_bad_schemes_and_unresolvable_hosts():
    for url in ("file:///etc/passwd", "ftp://example.com/x", "gopher://x", "http:///nohost", "data:,x"):
        with pytest.raises(BlockedURL):
            check_url(url)
    with pytest.raises(BlockedURL, match="could not be resolved"):
        check_url("http://no-such-host.invalid/x")


@pytest.fixture
def server():
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            return

        def do_GET(self):  # noqa: N802
            if self.path == "/big":
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"x" * 5000)
            elif self.path.startswith("/redirect"):
                self.send_response(302)
                self.send_header("Location", self.path.split("to=", 1)[1])
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                body = b"hello bytes"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Disposition", 'attachment; filename="greeting.txt"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetch_with_the_allow_list_limits_and_redirect_checks(server):
    with pytest.raises(BlockedURL):
        fetch(server + "/file", max_bytes=100, timeout=5)
    data, ctype, name = fetch(server + "/file", allow=["127.0.0.1"], max_bytes=100, timeout=5)
    assert (data, ctype, name) == (b"hello bytes", "text/plain", "greeting.txt")
    with pytest.raises(FetchError, match="byte limit"):
        fetch(server + "/big", allow=["127.0.0.1"], max_bytes=1000, timeout=5)
    # a redirect is followed only to a host that passes the check too
    assert fetch(server + "/redirect?to=/file", allow=["127.0.0.1"], max_bytes=100, timeout=5)[0] == b"hello bytes"
    with pytest.raises(BlockedURL, match="169.254.169.254"):
        fetch(server + "/redirect?to=http://169.254.169.254/latest", allow=["127.0.0.1"], max_bytes=100, timeout=5)
