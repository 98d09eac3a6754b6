"""`triage serve` over TLS: the options `serve` hands uvicorn, exercised by a real uvicorn server on a real
socket with certificates made here (a private CA, a server certificate for 127.0.0.1, a client certificate)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from server.api.app import create_server
from server.cli.serve import uvicorn_options
from server.config import Settings, load_settings
from tests.routing.doubles import ScriptedEngine


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".pem")
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert("triage test CA", ca_key, None, ca_key)
    ca_pem, _ = _write(d / "ca", ca_key, ca)
    server_key = _key()
    server_pem, server_key_path = _write(d / "server", server_key, _cert("127.0.0.1", server_key, ca, ca_key))
    client_key = _key()
    client_pem, client_key_path = _write(d / "client", client_key, _cert("client", client_key, ca, ca_key))
    return {
        "ca": ca_pem,
        "server": server_pem,
        "server_key": server_key_path,
        "client": client_pem,
        "client_key": client_key_path,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**tls: object) -> Settings:
        settings = load_settings(
            database_url=f"sqlite:///{tmp_path / 'tls.db'}",
            storage={"data_key_file": tmp_path / "data.key"},
            api={"port": _free_port()},
            tls=tls,
        )
        options = uvicorn_options(settings)
        options["log_level"] = "warning"
        server = uvicorn.Server(uvicorn.Config(create_server(settings, engine=ScriptedEngine()), **options))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.05)
        servers.append((server, thread))
        return settings

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)


def test_https_with_a_verified_certificate_and_no_plain_http(serve, pki: dict[str, Path]) -> None:
    settings = serve(certfile=pki["server"], keyfile=pki["server_key"])
    port = settings.api.port
    ok = httpx.get(f"https://127.0.0.1:{port}/health", verify=ssl.create_default_context(cafile=str(pki["ca"])))
    assert ok.status_code == 200
    # The certificate is not trusted without the CA, and plain HTTP gets no answer from the TLS socket.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"https://127.0.0.1:{port}/health")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)


def test_mutual_tls_refuses_a_client_without_a_certificate(serve, pki: dict[str, Path]) -> None:
    settings = serve(certfile=pki["server"], keyfile=pki["server_key"], ca_certs=pki["ca"], require_client_cert=True)
    url = f"https://127.0.0.1:{settings.api.port}/health"
    context = ssl.create_default_context(cafile=str(pki["ca"]))
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, verify=context, timeout=5)
    context.load_cert_chain(str(pki["client"]), str(pki["client_key"]))
    assert httpx.get(url, verify=context).status_code == 200


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="go together"):
        load_settings(tls={"certfile": tmp_path / "a.pem"})
    with pytest.raises(ValueError, match="needs tls.ca_certs"):
        load_settings(tls={"certfile": tmp_path / "a", "keyfile": tmp_path / "b", "require_client_cert": True})
    missing = load_settings(tls={"certfile": tmp_path / "a.pem", "keyfile": tmp_path / "a.key"})
    with pytest.raises(FileNotFoundError, match="a.pem"):
        uvicorn_options(missing)
    assert "ssl_certfile" not in uvicorn_options(load_settings())
