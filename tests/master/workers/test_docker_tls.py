"""DockerEngine over https: the engine's certificate is verified unless the ``tls`` settings say
otherwise. A local https server with a self-signed certificate (made here by openssl) plays
the engine's ``/version``."""

from __future__ import annotations

import dataclasses
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from buildyard.master.workers.docker import DockerEngine, DockerError
from buildyard.testing.postgres import free_port


@dataclasses.dataclass
class TLSConfig:
    """Shaped like docker-py's ``docker.tls.TLSConfig`` (the attributes DockerEngine reads)."""

    ca_cert: str | None = None
    verify: bool = True


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("engine-tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
async def engine_url(certificate: tuple[Path, Path]) -> AsyncIterator[str]:
    async def version(request: web.Request) -> web.Response:
        return web.json_response({"ApiVersion": "1.43"})

    app = web.Application()
    app.router.add_get("/version", version)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_https_without_tls_settings_refuses_a_self_signed_engine(engine_url: str) -> None:
    async with DockerEngine(engine_url) as engine:
        with pytest.raises(DockerError, match="certificate verify failed"):
            await engine.json("GET", "/version")


async def test_tls_with_the_engine_ca_is_verified_and_answers(
    engine_url: str, certificate: tuple[Path, Path]
) -> None:
    async with DockerEngine(engine_url, tls=TLSConfig(ca_cert=str(certificate[0]))) as engine:
        assert (await engine.json("GET", "/version"))["ApiVersion"] == "1.43"


async def test_tls_verify_false_is_the_users_choice(engine_url: str) -> None:
    tcp = engine_url.replace("https://", "tcp://")
    async with DockerEngine(tcp, tls=TLSConfig(verify=False)) as engine:
        assert (await engine.json("GET", "/version"))["ApiVersion"] == "1.43"
