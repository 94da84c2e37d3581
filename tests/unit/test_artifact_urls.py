"""The agent's presigned-URL downloader against a real HTTP(S) server on loopback: resume
with Range after a break, never more than the signed length, exactly the signed sha256,
no redirects or other schemes, TLS trust from a CA file (a MinIO with a private CA)."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent.ota.artifact_urls import UrlDownloader, UrlSettings
from agent.ota.errors import ArtifactUrlFailed
from agent.ota.machine import TargetInfo

DATA = bytes(range(256)) * 4096  # 1 MiB


def target(data: bytes = DATA, length: int | None = None) -> TargetInfo:
    sha = hashlib.sha256(data).hexdigest()
    n = len(data) if length is None else length
    return TargetInfo("v1", f"tiny/1/{sha}.model.onnx", n, sha, {"file": "model.onnx"})


class Server:
    """Serves ``body``; ``mode`` picks a misbehaviour. Records the Range headers it got."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.body, self.mode = DATA, "ok"
        self.ranges: list[str | None] = []
        self.paths: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.ranges.append(self.headers.get("Range"))
                outer.paths.append(self.path)
                body, start = outer.body, 0
                if outer.mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "file:///etc/passwd")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                if outer.mode == "endless":  # no Content-Length, more than signed
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(body + body)
                    return
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if outer.mode == "break" and not rng:  # half, then the connection drops
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.scheme = "https" if tls else "http"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://localhost:{self.httpd.server_address[1]}/bucket/key?sig=1"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def fetch(url: str, t: TargetInfo, tmp_path: Path, **kw: object) -> Path:
    return UrlDownloader(UrlSettings(timeout_s=5.0, **kw)).fetch(url, t, tmp_path / "a.url")  # type: ignore[arg-type]


def test_downloads_exactly_the_signed_bytes(server: Server, tmp_path: Path) -> None:
    assert fetch(server.url, target(), tmp_path).read_bytes() == DATA
    assert server.ranges == [None]


def test_a_broken_download_resumes_with_range(server: Server, tmp_path: Path) -> None:
    server.mode = "break"
    assert fetch(server.url, target(), tmp_path).read_bytes() == DATA
    assert server.ranges == [None, f"bytes={len(DATA) // 2}-"]


def test_a_resume_asks_for_a_fresh_url(server: Server, tmp_path: Path) -> None:
    server.mode = "break"
    renewed: list[str] = []

    def renew() -> str:
        renewed.append(server.url + "&renewed=1")
        return renewed[-1]

    out = UrlDownloader(UrlSettings(timeout_s=5.0)).fetch(
        server.url, target(), tmp_path / "a.url", renew=renew
    )
    assert out.read_bytes() == DATA and len(renewed) == 1
    assert server.paths == ["/bucket/key?sig=1", "/bucket/key?sig=1&renewed=1"]


@pytest.mark.parametrize(
    ("mode", "signed", "words"),
    [
        ("endless", target(), "exceeds its signed length"),  # bounded: never past the length
        ("ok", target(DATA, len(DATA) - 1), "signed length"),  # Content-Length disagrees
        ("ok", target(b"other bytes", len(DATA)), "does not match"),  # wrong sha256
        ("redirect", target(), "HTTP 302"),
    ],
)
def test_wrong_bytes_are_refused_and_nothing_is_left(
    server: Server, tmp_path: Path, mode: str, signed: TargetInfo, words: str
) -> None:
    server.mode = mode
    with pytest.raises(ArtifactUrlFailed, match=words):
        fetch(server.url, signed, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_only_http_urls(tmp_path: Path) -> None:
    with pytest.raises(ArtifactUrlFailed, match="scheme 'file'"):
        fetch("file:///etc/passwd", target(), tmp_path)


def test_connection_refused_is_an_url_failure(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ArtifactUrlFailed, match="unreachable"):
        fetch(f"http://127.0.0.1:{port}/x", target(), tmp_path)


def _ca_and_server_cert(tmp_path: Path) -> tuple[Path, ssl.SSLContext]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "private minio CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return ca_file, context


def test_https_trusts_the_configured_ca_and_not_an_unknown_one(tmp_path: Path) -> None:
    pki, out = tmp_path / "pki", tmp_path / "out"
    pki.mkdir()
    out.mkdir()
    ca_file, context = _ca_and_server_cert(pki)
    server = Server(tls=context)
    try:
        assert fetch(server.url, target(), out, ca_file=ca_file).read_bytes() == DATA
        (out / "a.url").unlink()
        with pytest.raises(ArtifactUrlFailed, match="unreachable"):  # system CAs: not trusted
            fetch(server.url, target(), out)
        assert list(out.iterdir()) == []
    finally:
        server.close()


def test_an_unreadable_ca_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactUrlFailed, match="CA file"):
        UrlDownloader(UrlSettings(ca_file=tmp_path / "missing.pem"))
