"""cogplane.tls: the single-machine stack's CA and server certificate."""

from __future__ import annotations

import socket
import ssl
import threading

from cogplane.tls import client_ca, ensure_certificates, ssl_context


def test_certificates_are_made_once_and_verify_for_127_0_0_1_and_localhost(tmp_path, monkeypatch):
    files = ensure_certificates(tmp_path)
    assert (files.ca.stat().st_mode & 0o777, files.key.stat().st_mode & 0o777) == (0o644, 0o600)
    first = files.cert.read_bytes()
    assert ensure_certificates(tmp_path).cert.read_bytes() == first  # kept, not re-made

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(files.cert, files.key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        for _ in range(2):
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.delenv("COGPLANE_CA", raising=False)
    assert client_ca(tmp_path) == str(files.ca)
    for host in ("127.0.0.1", "localhost"):
        with socket.create_connection(("127.0.0.1", port)) as raw:
            with ssl_context(tmp_path).wrap_socket(raw, server_hostname=host) as tls:
                assert tls.recv(2) == b"ok"
    listener.close()
