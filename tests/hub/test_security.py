"""Access control of the hub (issue 11): read tokens, the loopback rule, the Host check, TLS and
a reverse proxy in front — each against a real hub on loopback."""

from __future__ import annotations

import contextlib
import datetime
import hmac
import ipaddress
import logging
import os
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import apitally_otel
from apitally_hub import HubServer
from apitally_hub.cli import main
from apitally_hub.config import Transport
from apitally_hub.security.hosts import InsecureBindError, is_loopback_host
from apitally_hub.security.tokens import TokenSet, resolve_tokens
from tests.support.hub_samples import gzip_lines, log_line, new_uuid, sync
from tests.support.servers import ServerThread

SRC = Path(apitally_otel.__file__).resolve().parents[1]
TOKEN = "hub-token-0123456789abcdef"
OTHER = "second-token-fedcba9876543210"
READS = ["/api/apps", "/api/{cid}/dev/requests", "/api/{cid}/dev/consumers", "/api/{cid}/dev/endpoints"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def guarded() -> Iterator[HubServer]:
    with HubServer(tokens=[TOKEN, OTHER]) as hub:
        yield hub


@pytest.fixture
def ingested(guarded: HubServer) -> str:
    """A client id with a sync and a request log (with headers and a body) in the guarded hub."""
    client_id = new_uuid()
    with httpx.Client(base_url=guarded.url) as http:
        assert http.post(f"/v2/{client_id}/dev/sync", json=sync()).status_code == 202
        body = gzip_lines([log_line()])
        response = http.post(f"/v2/{client_id}/dev/log", params={"uuid": new_uuid()}, content=body)
        assert response.status_code == 202
    guarded.settle()  # folded: the reads below see it
    return client_id


# -- tokens ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", READS)
def test_reads_without_credentials_are_401(guarded: HubServer, ingested: str, path: str) -> None:
    with httpx.Client(base_url=guarded.url) as http:
        for headers in ({}, bearer("wrong-token-0123456789"), {"Authorization": f"Basic {TOKEN}"}):
            response = http.get(path.format(cid=ingested), headers=headers, params={"since": "1h"})
            assert response.status_code == 401, response.text
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert ingested not in response.text and "acme" not in response.text


@pytest.mark.parametrize("path", READS)
def test_reads_with_either_token_are_200(guarded: HubServer, ingested: str, path: str) -> None:
    with httpx.Client(base_url=guarded.url) as http:
        for token in (TOKEN, OTHER):
            response = http.get(path.format(cid=ingested), headers=bearer(token))
            assert response.status_code == 200, response.text
    assert ingested in http_get(guarded, "/api/apps", TOKEN)


def http_get(hub: HubServer, path: str, token: str | None) -> str:
    with httpx.Client(base_url=hub.url) as http:
        return http.get(path, headers=bearer(token) if token else {}).text


def test_client_ids_are_not_listed_to_an_unauthenticated_caller(guarded: HubServer, ingested: str) -> None:
    """A client id read from /api/apps was enough to write fake data (100 000 fake server errors)."""
    response = httpx.get(f"{guarded.url}/api/apps")
    assert response.status_code == 401
    assert ingested not in response.text
    assert "client_id" not in response.text


def test_ingest_and_health_need_no_token(guarded: HubServer) -> None:
    with httpx.Client(base_url=guarded.url) as http:
        assert http.get("/health").json()["status"] == "ok"
        assert http.post(f"/v2/{new_uuid()}/dev/sync", json=sync()).status_code == 202
        assert http.post(f"/v2/{new_uuid()}/dev/startup", json={}).status_code == 422


def test_unknown_paths_are_denied_by_default(guarded: HubServer) -> None:
    for path in ("/", "/dashboard", "//api/apps", "/v2"):
        # a page read is sent to the dashboard's login form, with nothing of the hub's data
        response = httpx.get(f"{guarded.url}{path}")
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
        assert response.content == b""
        assert httpx.post(f"{guarded.url}{path}").status_code == 401


def test_hub_server_query_sends_its_token(guarded: HubServer, ingested: str) -> None:
    assert guarded.query(ingested, "dev", "endpoints")["endpoints"][0]["requests"] == 42


def test_report_sends_the_token(
    guarded: HubServer, ingested: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["report", "--hub", guarded.url, "--client-id", ingested, "--json"]
    assert main(argv) == 1
    assert "401" in capsys.readouterr().err
    assert main([*argv, "--token", TOKEN]) == 0
    assert ingested in capsys.readouterr().out
    monkeypatch.setenv("APITALLY_HUB_TOKEN", f"{OTHER},{TOKEN}")
    assert main(argv) == 0
    capsys.readouterr()


def test_tokens_are_compared_in_constant_time_against_every_token() -> None:
    calls: list[tuple[bytes, bytes]] = []

    def compare(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return a == b

    tokens = TokenSet([TOKEN, OTHER, "third-token-000000000000"], _compare=compare)
    assert tokens.matches(TOKEN)  # the first token matches: the other two are compared all the same
    assert len(calls) == 3
    assert {len(a) for a, _ in calls} == {len(b) for _, b in calls} == {32}  # digests, not the tokens
    assert not tokens.matches("x")  # a short guess costs as much as a long one
    assert len(calls) == 6
    assert TokenSet([TOKEN])._compare is hmac.compare_digest


def test_token_sources(tmp_path: Path) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text(f"# the hub's read tokens\n\n  {TOKEN}  \n{OTHER}\n# {'old-token-' * 3}\n")
    assert resolve_tokens(None, token_file, {}) == (TOKEN, OTHER)
    assert resolve_tokens([TOKEN], token_file, {}) == (TOKEN, OTHER)
    assert resolve_tokens(None, None, {"APITALLY_HUB_TOKEN": f" {OTHER} ,{TOKEN},"}) == (OTHER, TOKEN)
    assert resolve_tokens([TOKEN], None, {"APITALLY_HUB_TOKEN": OTHER}) == (TOKEN,)  # the argument wins
    assert resolve_tokens(None, None, {}) == ()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--token", "short"], "shorter than 16"),
        (["--token", "with space in the token"], "visible ASCII"),
        (["--token-file", "/nonexistent/tokens"], "cannot read the token file"),
        (["--token-file", "EMPTY"], "has no token"),
    ],
)
def test_unusable_tokens_refuse_to_start(
    args: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    args = [str(empty) if a == "EMPTY" else a for a in args]
    assert main(["hub", "--port", "0", "--db", str(tmp_path / "hub.sqlite"), *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert not (tmp_path / "hub.sqlite").exists()


# -- no token: loopback only --------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_non_loopback_bind_without_a_token_refuses_to_start(
    host: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APITALLY_HUB_TOKEN", raising=False)
    assert main(["hub", "--host", host, "--port", "0", "--db", str(tmp_path / "hub.sqlite")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "--token" in captured.err
    with pytest.raises(InsecureBindError):
        HubServer(host=host).start()


def test_the_hub_command_exits_2_on_0_0_0_0_without_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "APITALLY_HUB_TOKEN"}
    env["PYTHONPATH"] = str(SRC)
    result = subprocess.run(
        [sys.executable, "-m", "apitally_hub.cli", "hub", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "--token" in line


def test_loopback_names_are_loopback() -> None:
    assert all(is_loopback_host(h) for h in ("127.0.0.1", "127.0.0.2", "::1", "localhost", "[::1]"))
    assert not any(is_loopback_host(h) for h in ("0.0.0.0", "::", "192.0.2.10", "no-such-host.invalid"))


def test_a_wildcard_bind_with_a_token_serves(tmp_path: Path) -> None:
    with HubServer(host="0.0.0.0", tokens=[TOKEN]) as hub:
        port = hub.url.rsplit(":", 1)[1]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as http:  # only loopback is spoken to
            assert http.get("/api/apps").status_code == 401
            assert http.get("/api/apps", headers=bearer(TOKEN)).status_code == 200


# -- the Host check (DNS rebinding) ---------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8250", "127.0.0.1.evil.example", "localhost.evil", "[::2]", "x:y"]
)
def test_a_foreign_host_header_is_421(hub: HubServer, client_id: str, host: str) -> None:
    with httpx.Client(base_url=hub.url) as http:
        assert http.post(f"/v2/{client_id}/dev/sync", json=sync()).status_code == 202
        for method, path in (("GET", "/api/apps"), ("GET", f"/api/{client_id}/dev/requests")):
            response = http.request(method, path, headers={"Host": host})
            assert response.status_code == 421
            assert "--allowed-host" in response.json()["detail"]
            assert client_id not in response.text
        response = http.post(f"/v2/{client_id}/dev/sync", json=sync(), headers={"Host": host})
        assert response.status_code == 421
        assert http.get("/health", headers={"Host": host}).status_code == 200  # probes by IP keep working


def test_loopback_host_headers_are_served(hub: HubServer) -> None:
    port = hub.url.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", "localhost", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST."):
        assert httpx.get(f"{hub.url}/api/apps", headers={"Host": host}).status_code == 200


def test_allowed_hosts_and_suffixes() -> None:
    with HubServer(allowed_hosts=["hub.example.com", ".corp.example"]) as hub, httpx.Client() as http:

        def status(host: str) -> int:
            return http.get(f"{hub.url}/api/apps", headers={"Host": host}).status_code

        assert status("hub.example.com:443") == 200
        assert status("corp.example") == status("a.b.corp.example") == 200
        assert status("example.com") == status("evilcorp.example") == status("hub.example.com.evil") == 421
    with HubServer(allowed_hosts=["*"]) as hub:
        assert httpx.get(f"{hub.url}/api/apps", headers={"Host": "anything.example"}).status_code == 200


# -- TLS directly ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1 (its own CA), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "hub.pem", folder / "hub.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_hub_serves_https_with_a_token(
    certificate: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert, key = certificate
    token_file = tmp_path / "tokens"
    token_file.write_text(f"{TOKEN}\n")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("APITALLY_HUB_TOKEN", None)
    argv = ["hub", "--port", "0", "--db", str(tmp_path / "h.sqlite"), "--log-level", "warning"]
    argv += ["--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--token-file", str(token_file)]
    process = subprocess.Popen(
        [sys.executable, "-m", "apitally_hub.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "listening on https://127.0.0.1:" in first, first
        url = first.split("listening on ", 1)[1].split()[0]
        assert "need a bearer token (1 admin)" in process.stdout.readline() + process.stdout.readline()
        context = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=url, verify=context, timeout=5) as http:
            assert _wait_healthy(http)
            client_id = new_uuid()
            assert http.post(f"/v2/{client_id}/dev/sync", json=sync()).status_code == 202
            assert http.get("/api/apps").status_code == 401
            deadline = time.monotonic() + 10  # folding (in the hub's folding process) takes a moment
            while client_id not in http.get("/api/apps", headers=bearer(TOKEN)).text:
                assert time.monotonic() < deadline, "the sync never showed up"
                time.sleep(0.05)
        with pytest.raises(httpx.ConnectError):  # the certificate is checked
            httpx.get(f"{url}/health", timeout=5)
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served on the TLS port
            httpx.get(url.replace("https://", "http://") + "/health", timeout=5)
        argv = ["report", "--hub", url, "--client-id", client_id, "--token", TOKEN, "--json"]
        assert main([*argv, "--ca-file", str(cert)]) == 0
        assert client_id in capsys.readouterr().out
    finally:
        process.terminate()
        process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def _wait_healthy(http: httpx.Client) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if http.get("/health").json()["status"] == "ok":
                return True
        except httpx.TransportError:
            time.sleep(0.05)
    return False


# -- behind a reverse proxy ---------------------------------------------------------------------------


def reverse_proxy(upstream: str, public_host: str) -> Starlette:
    """A minimal TLS-terminating proxy's behaviour: pass Host through, add X-Forwarded-For/-Proto."""
    client = httpx.AsyncClient(base_url=upstream, follow_redirects=False)

    async def forward(request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k not in ("host", "content-length")}
        headers.update({"host": public_host, "x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"})
        upstream_response = await client.request(
            request.method,
            request.url.path,
            params=request.query_params,
            headers=headers,
            content=await request.body(),
        )
        excluded = ("content-length", "transfer-encoding", "connection", "content-encoding")
        return Response(
            upstream_response.content,
            status_code=upstream_response.status_code,
            headers={k: v for k, v in upstream_response.headers.items() if k not in excluded},
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with client:
            yield

    return Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])], lifespan=lifespan)


@pytest.mark.parametrize(("trusted", "scheme"), [("127.0.0.1", "https"), ("192.0.2.1", "http")])
def test_behind_a_reverse_proxy(trusted: str, scheme: str, caplog: pytest.LogCaptureFixture) -> None:
    transport = Transport(forwarded_allow_ips=trusted)
    with (
        HubServer(tokens=[TOKEN], allowed_hosts=["hub.example.com"], transport=transport) as hub,
        ServerThread(reverse_proxy(hub.url, "hub.example.com")) as proxy,
        httpx.Client(base_url=proxy, timeout=10) as http,
    ):
        client_id = new_uuid()
        assert http.post(f"/v2/{client_id}/dev/sync", json=sync()).status_code == 202
        with caplog.at_level(logging.WARNING, logger="apitally_hub.security"):
            assert http.get("/api/apps").status_code == 401
        client = "203.0.113.7" if trusted == "127.0.0.1" else "127.0.0.1"
        assert any(client in r.getMessage() and "/api/apps" in r.getMessage() for r in caplog.records)
        hub.settle()  # a 2xx means queued; the app is listed once it is folded
        assert client_id in http.get("/api/apps", headers=bearer(TOKEN)).text
        # URLs the hub builds use the scheme the proxy reports, only when the proxy is trusted
        redirect = http.get("/api/apps/", headers=bearer(TOKEN))
        assert redirect.status_code == 307
        assert redirect.headers["location"] == f"{scheme}://hub.example.com/api/apps"
