"""``reporters.MailNotifier``: reports as mail, sent over SMTP with aiosmtplib.

Buildbot's arguments and behaviour: mail goes to the build's interested users (the authors of
its changes and its owners, through ``lookup``: a domain name to append, or an object with
``getAddress(name)``) with ``extraRecipients`` in Cc, or to ``extraRecipients`` alone;
``useTls`` requires STARTTLS, ``useSmtps`` speaks TLS from the start, ``smtpUser`` and
``smtpPassword`` (may be secrets) log in. Patches (``add_patch``) and logs (the formatter's
``want_logs_content``) are attached. A missing worker's mail goes to its ``notify`` addresses.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any

import structlog

from buildyard.common.errors import config_error
from buildyard.master.reporters.base import ReporterBase
from buildyard.master.reporters.details import properties_of
from buildyard.master.reporters.generators import BuildStatusGenerator, WorkerMissingGenerator
from buildyard.master.reporters.message import MessageFormatter, MessageFormatterMissingWorker
from buildyard.master.reporters.service import maybe_await

log = structlog.get_logger(__name__)

_ADDR = r"[^@\s<>]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\.?"
VALID_EMAIL = re.compile(rf"^(?:{_ADDR}|(?:.+\s+)?<{_ADDR}>\s*)$")

#: how long one SMTP conversation may take
SMTP_TIMEOUT = 60.0


class Domain:
    """``lookup="example.org"``: a user name without ``@`` gets ``@example.org``."""

    def __init__(self, domain: str) -> None:
        self.domain = domain

    def getAddress(self, name: str) -> str:
        return name if "@" in name else f"{name}@{self.domain}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Domain) and other.domain == self.domain

    def __hash__(self) -> int:
        return hash(self.domain)


def _merged(reports: Sequence[dict[str, Any]], key: str) -> Any:
    result = None
    for report in reports:
        value = report.get(key)
        if value is None:
            continue
        result = value if result is None else result + value
    return result


def _first(reports: Sequence[dict[str, Any]], key: str) -> Any:
    return next((r[key] for r in reports if r.get(key) is not None), None)


class MailNotifier(ReporterBase):
    secrets = ("smtpUser", "smtpPassword")

    def checkConfig(  # type: ignore[override]
        self,
        fromaddr: Any = None,
        relayhost: str = "localhost",
        lookup: Any = None,
        extraRecipients: Any = None,
        sendToInterestedUsers: bool = True,
        extraHeaders: Any = None,
        useTls: bool = False,
        useSmtps: bool = False,
        smtpUser: Any = None,
        smtpPassword: Any = None,
        smtpPort: int = 25,
        dumpMailsToLog: bool = False,
        generators: Any = None,
    ) -> None:
        if not isinstance(fromaddr, str) or not VALID_EMAIL.match(fromaddr):
            config_error(f"MailNotifier: fromaddr {fromaddr!r} is not a valid email address")
        if not isinstance(extraRecipients, list | tuple | type(None)):
            config_error("MailNotifier: extraRecipients must be a list or tuple")
        for r in extraRecipients or ():
            if not isinstance(r, str) or not VALID_EMAIL.match(r):
                config_error(f"MailNotifier: extra recipient {r!r} is not a valid email")
        if not (
            lookup is None
            or isinstance(lookup, str)
            or callable(getattr(lookup, "getAddress", None))
        ):
            config_error(
                "MailNotifier: lookup must be a domain name or have a getAddress(name) method"
            )
        if extraHeaders is not None and not isinstance(extraHeaders, dict):
            config_error("MailNotifier: extraHeaders must be a dictionary")
        if useTls and useSmtps:
            config_error("MailNotifier: useTls (STARTTLS) and useSmtps (TLS) exclude each other")
        if not isinstance(smtpPort, int) or isinstance(smtpPort, bool):
            config_error(f"MailNotifier: smtpPort must be a port number, not {smtpPort!r}")
        super().checkConfig(
            generators=self._default_generators() if generators is None else generators
        )

    def _default_generators(self) -> list[Any]:
        return [
            BuildStatusGenerator(
                add_patch=True, message_formatter=MessageFormatter(template_type="html")
            ),
            WorkerMissingGenerator(
                workers="all",
                message_formatter=MessageFormatterMissingWorker(template_type="html"),
            ),
        ]

    def reconfigService(  # type: ignore[override]
        self,
        fromaddr: str,
        relayhost: str = "localhost",
        lookup: Any = None,
        extraRecipients: Any = None,
        sendToInterestedUsers: bool = True,
        extraHeaders: Any = None,
        useTls: bool = False,
        useSmtps: bool = False,
        smtpUser: Any = None,
        smtpPassword: Any = None,
        smtpPort: int = 25,
        dumpMailsToLog: bool = False,
        generators: Any = None,
    ) -> None:
        super().reconfigService(
            generators=self._default_generators() if generators is None else generators
        )
        self.fromaddr = fromaddr
        self.relayhost = relayhost
        self.lookup = Domain(lookup) if isinstance(lookup, str) else lookup
        self.extraRecipients = list(extraRecipients or [])
        self.sendToInterestedUsers = sendToInterestedUsers
        self.extraHeaders = extraHeaders
        self.useTls, self.useSmtps = useTls, useSmtps
        self.smtpUser, self.smtpPassword = smtpUser, smtpPassword
        self.smtpPort = smtpPort
        self.dumpMailsToLog = dumpMailsToLog

    async def createEmail(
        self,
        msgdict: dict[str, Any],
        builds: Sequence[dict[str, Any]] | None = None,
        patches: Sequence[dict[str, Any]] | None = None,
        logs: Sequence[dict[str, Any]] | None = None,
    ) -> EmailMessage:
        subject, kind = msgdict["subject"] or "", msgdict["type"] or "plain"
        if "\n" in subject:
            raise ValueError(f"the subject {subject!r} has a newline")
        if kind not in ("plain", "html"):
            raise ValueError(f"a mail is 'plain' or 'html', not {kind!r}")
        m = EmailMessage()
        m["Date"] = email.utils.formatdate(localtime=True)
        m["Subject"] = subject
        m["From"] = self.fromaddr
        m.set_content(msgdict["body"], subtype=kind, charset="utf-8")
        for i, patch in enumerate(patches or ()):
            m.add_attachment(
                str(patch["body"]).encode(), "text", "plain", filename=f"source patch {i}"
            )
        for lg in logs or ():
            name = f"{lg['stepname']}.{lg['name']}"
            if builds is not None and len(builds) > 1:
                name = f"{lg.get('buildername', '')}.{name}"
            text = str((lg.get("content") or {}).get("content", ""))
            m.add_attachment(text.encode(), "text", "plain", filename=name)
        if self.extraHeaders:
            headers = self.extraHeaders
            if builds is not None and len(builds) == 1:
                assert self._env is not None
                headers = await properties_of(self._env, builds[0]).render(headers)
            for key, value in headers.items():
                if key in m:
                    log.warning("mail_header_kept", reporter=self.name, header=key)
                    continue
                m[key] = str(value)
        return m

    async def _interested(self, users: Sequence[str]) -> set[str]:
        found: set[str] = set()
        if not self.sendToInterestedUsers:
            return found
        for user in users:
            address: str | None = user
            if self.lookup is not None:
                address = await maybe_await(self.lookup.getAddress(user))
            if not isinstance(address, str):
                continue
            if address.count("@") > 1:  # git's 'User <u@x.org>@x.org'
                address = address[: address.rindex("@")]
            if VALID_EMAIL.match(address):
                found.add(address)
            else:
                log.info("mail_address_invalid", reporter=self.name, address=address)
        return found

    async def sendMessage(self, reports: Sequence[dict[str, Any]]) -> None:
        body = _merged(reports, "body")
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        body = str(body or "")
        if not body.endswith("\n\n"):
            body += "\n\n"
        builds = _merged(reports, "builds")
        worker = _first(reports, "worker")
        users = list(_merged(reports, "users") or [])
        msgdict = {
            "body": body,
            "subject": _first(reports, "subject"),
            "type": _first(reports, "type"),
        }
        m = await self.createEmail(
            msgdict, builds, _merged(reports, "patches"), _merged(reports, "logs")
        )
        if worker is None:
            to = await self._interested(users)
            cc: set[str] = set()
            if self.sendToInterestedUsers and to:
                cc.update(self.extraRecipients)
            else:
                to.update(self.extraRecipients)
            if to:
                m["To"] = ", ".join(sorted(to))
            if cc:
                m["Cc"] = ", ".join(sorted(cc))
            recipients = sorted(to | cc)
        else:
            recipients = list(users)
            m["To"] = ", ".join(recipients)
        await self.sendMail(m, recipients, builds)

    async def sendMail(
        self, m: EmailMessage, recipients: Sequence[str], builds: Any = None
    ) -> None:
        if not recipients:
            log.info("mail_not_sent", reporter=self.name, why="no recipients")
            return
        addresses = [email.utils.parseaddr(r)[1] for r in recipients]
        buildids = [b.get("buildid") for b in builds or ()]
        log.info("mail_sending", reporter=self.name, recipients=addresses, buildids=buildids)
        if self.dumpMailsToLog:
            log.info("mail_data", reporter=self.name, data=m.as_string())
        # imported when a mail goes out, not at every master's start: most masters send none
        import aiosmtplib

        try:
            await aiosmtplib.send(
                m,
                sender=email.utils.parseaddr(self.fromaddr)[1],
                recipients=addresses,
                hostname=self.relayhost,
                port=self.smtpPort,
                username=self.smtpUser if self.smtpUser and self.smtpPassword else None,
                password=self.smtpPassword if self.smtpUser and self.smtpPassword else None,
                use_tls=self.useSmtps,
                start_tls=bool(self.useTls),
                timeout=SMTP_TIMEOUT,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.error(
                "mail_refused",
                reporter=self.name,
                relayhost=self.relayhost,
                port=self.smtpPort,
                recipients=addresses,
                buildids=buildids,
                error=f"{type(exc).__name__}: {exc}",
            )
