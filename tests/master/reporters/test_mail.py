"""MailNotifier on a real master with a real worker, against aiosmtpd running in this process:
plain SMTP, STARTTLS with login, and a server that refuses."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email
import email.policy
import subprocess
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from buildyard.master.model.results import Results
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port


@dataclasses.dataclass
class Mailbox:
    port: int = 0
    refuse: str | None = None
    mails: list[tuple[list[str], EmailMessage, bool, Any]] = dataclasses.field(default_factory=list)
    arrived: asyncio.Condition = dataclasses.field(default_factory=asyncio.Condition)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.refuse is not None:
            return self.refuse
        assert isinstance(envelope.content, bytes)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        async with self.arrived:
            self.mails.append(
                (list(envelope.rcpt_tos), message, session.ssl is not None, session.auth_data)
            )
            self.arrived.notify_all()
        return "250 OK"

    async def wait_for(self, count: int, within: float = 120) -> None:
        async with asyncio.timeout(within), self.arrived:
            await self.arrived.wait_for(lambda: len(self.mails) >= count)


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"bob", b"s3cret")
    return AuthResult(success=ok, handled=False, auth_data=data)


@contextlib.asynccontextmanager
async def smtp_server(**smtp: Any) -> AsyncIterator[Mailbox]:
    box = Mailbox(port=free_port())
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(box, hostname="localhost", **smtp), "127.0.0.1", box.port
    )
    try:
        yield box
    finally:
        server.close()
        await server.wait_closed()


def _config(port: int, extra: str = "") -> str:
    return f"""
c['buildbotURL'] = 'http://ci.example/'
c['title'] = 'Hello CI'
c['builders'] = [
    util.BuilderConfig(name='ok', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['true'])])),
    util.BuilderConfig(name='bad', workernames=['w1'],
                       factory=util.BuildFactory([steps.ShellCommand(command=['false'])])),
]
c['services'] = [
    reporters.MailNotifier(fromaddr='ci@example.org', relayhost='localhost', smtpPort={port},
                           extraRecipients=['team@example.org'], lookup='example.org',
                           {extra}),
]
"""


async def test_a_finished_build_is_mailed_to_its_owner_and_the_extra_recipients(
    tmp_path: Path,
) -> None:
    async with smtp_server() as box, running_master(tmp_path, _config(box.port)) as run:
        result = await run.build("bad", properties={"owner": "alice"})
        assert result.build.results == Results.FAILURE
        await box.wait_for(1)
    [(rcpt, message, tls, _login)] = box.mails
    assert sorted(rcpt) == ["alice@example.org", "team@example.org"]
    assert message["From"] == "ci@example.org"
    assert message["To"] == "alice@example.org"
    assert message["Cc"] == "team@example.org"
    assert not tls
    subject = str(message["Subject"])
    assert "Hello CI" in subject and "bad" in subject and "failure" in subject
    body = message.get_body(("html",))
    assert body is not None
    text = body.get_content()
    url = f"http://ci.example/#/builders/{result.build.builderid}/builds/{result.build.number}"
    assert url in text
    assert "failed build" in text.lower()


@pytest.fixture
def certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A self-signed certificate for ``localhost``, trusted by this process's TLS clients."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return cert, key


async def test_starttls_and_login(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    extra = "useTls=True, smtpUser='bob', smtpPassword=util.Secret('smtp_pw'),"
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(mode=0o700)
    (secrets_dir / "smtp_pw").write_text("s3cret")
    (secrets_dir / "smtp_pw").chmod(0o600)
    config = (
        _config(0, extra)
        + f"c['secretsProviders'] = [secrets.SecretInAFile({str(secrets_dir)!r})]\n"
    )
    async with smtp_server(
        tls_context=context, require_starttls=True, authenticator=_authenticator,
        auth_require_tls=True,
    ) as box:  # fmt: skip
        config = config.replace("smtpPort=0", f"smtpPort={box.port}")
        async with running_master(tmp_path, config) as run:
            result = await run.build("ok", properties={"owner": "alice@example.org"})
            assert result.build.results == Results.SUCCESS
            await box.wait_for(1)
    [(rcpt, message, tls, login)] = box.mails
    assert tls
    assert isinstance(login, LoginPassword) and login.login == b"bob"
    assert sorted(rcpt) == ["alice@example.org", "team@example.org"]
    assert "ok" in str(message["Subject"])


async def test_a_refusing_server_is_logged_and_the_build_is_unchanged(tmp_path: Path) -> None:
    async with smtp_server() as box, running_master(tmp_path, _config(box.port)) as run:
        box.refuse = "554 no thanks"
        with structlog.testing.capture_logs() as logs:
            result = await run.build("ok", properties={"owner": "alice"})

            def refused() -> list[Any]:
                return [e for e in logs if e["event"] == "mail_refused"]

            async with asyncio.timeout(60):
                while not refused():  # noqa: ASYNC110  (only the log line says it happened)
                    await asyncio.sleep(0.05)
    assert result.build.results == Results.SUCCESS
    [line] = refused()
    assert line["reporter"].startswith("MailNotifier")
    assert line["buildids"] == [result.build.id]
    assert "no thanks" in line["error"]
