"""``reporters.BitbucketStatusPush``: Bitbucket Cloud build statuses.

``POST {base_url}/{owner}/{repo}/commit/{sha}/statuses/build`` with ``state``
(``INPROGRESS``, ``SUCCESSFUL``, ``FAILED``), ``key`` (the SHA-1 of the rendered
``status_key``), ``name``, ``description`` (the report's subject) and ``url``. Authenticated by
``auth`` (user, app password) or else an OAuth client-credentials token fetched from
``oauth_url`` with ``oauth_key``/``oauth_secret`` before each report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlparse

import structlog

from buildyard.common.errors import config_error
from buildyard.master.model.properties import Property
from buildyard.master.model.results import Results
from buildyard.master.reporters.base import ReporterBase
from buildyard.master.reporters.details import properties_of
from buildyard.master.reporters.generators import BuildStartEndStatusGenerator
from buildyard.master.reporters.httpclient import RETRY_DELAYS, HttpClient, HttpError
from buildyard.master.reporters.message import MessageFormatter

log = structlog.get_logger(__name__)

_BASE_URL = "https://api.bitbucket.org/2.0/repositories"
_OAUTH_URL = "https://bitbucket.org/site/oauth2/access_token"


class BitbucketStatusPush(ReporterBase):
    name = "BitbucketStatusPush"
    retry_delays: Sequence[float] = RETRY_DELAYS

    def checkConfig(  # type: ignore[override]
        self,
        oauth_key: Any = None,
        oauth_secret: Any = None,
        auth: Any = None,
        base_url: str = _BASE_URL,
        oauth_url: str = _OAUTH_URL,
        debug: Any = None,
        verify: Any = None,
        status_key: Any = None,
        status_name: Any = None,
        generators: Any = None,
        **kwargs: Any,
    ) -> None:
        if auth is not None and (oauth_key is not None or oauth_secret is not None):
            config_error(
                "BitbucketStatusPush: give auth (an app password) or oauth_key/oauth_secret, "
                "not both"
            )
        if auth is None and (oauth_key is None or oauth_secret is None):
            config_error("BitbucketStatusPush: give auth, or both oauth_key and oauth_secret")
        super().checkConfig(
            generators=self._default_generators() if generators is None else generators,
            **kwargs,
        )

    def _default_generators(self) -> list[Any]:
        return [
            BuildStartEndStatusGenerator(
                start_formatter=MessageFormatter(subject="", template=""),
                end_formatter=MessageFormatter(subject="", template=""),
            )
        ]

    async def reconfigService(  # type: ignore[override]
        self,
        oauth_key: Any = None,
        oauth_secret: Any = None,
        auth: Any = None,
        base_url: str = _BASE_URL,
        oauth_url: str = _OAUTH_URL,
        debug: Any = None,
        verify: Any = None,
        status_key: Any = None,
        status_name: Any = None,
        generators: Any = None,
        **kwargs: Any,
    ) -> None:
        oauth_key, oauth_secret = await self.renderSecrets(oauth_key, oauth_secret)
        self.auth = await self.renderSecrets(auth)
        self.base_url = base_url
        self.status_key = status_key or Property("buildername")
        self.status_name = status_name or Property("buildername")
        super().reconfigService(
            generators=self._default_generators() if generators is None else generators,
            **kwargs,
        )
        for old in (getattr(self, "_http", None), getattr(self, "_oauth", None)):
            if old is not None:
                await old.close()
        common: dict[str, Any] = {
            "verify": verify,
            "debug": bool(debug),
            "retry_delays": self.retry_delays,
            "who": str(self.name),
        }
        self._http = HttpClient(base_url.rstrip("/"), auth=self.auth, **common)
        self._oauth: HttpClient | None = None
        if self.auth is None:
            self._oauth = HttpClient(oauth_url, auth=(oauth_key, oauth_secret), **common)

    async def stopService(self) -> None:
        await super().stopService()
        await self._http.close()
        if self._oauth is not None:
            await self._oauth.close()

    def get_owner_and_repo(self, repourl: str) -> tuple[str, str]:
        parsed, base = urlparse(repourl), urlparse(self.base_url)
        if parsed.path.startswith(base.path):
            path = parsed.path[len(base.path) :]
        elif parsed.scheme:
            path = parsed.path
        else:  # git@host:owner/repo.git
            path = parsed.path.split(":", 1)[-1]
        parts = path.strip("/").removesuffix(".git").rstrip("/").split("/")
        if len(parts) != 2:
            raise ValueError(f"expected OWNER/REPONAME in the repository URL {repourl!r}")
        return parts[0], parts[1]

    async def sendMessage(self, reports: Sequence[dict[str, Any]]) -> None:
        build = reports[0]["builds"][0]
        headers: dict[str, str] = {}
        if self._oauth is not None:
            answer = await self._oauth.post("", form={"grant_type": "client_credentials"})
            try:
                token = answer.json()["access_token"] if answer.status == 200 else None
            except (HttpError, KeyError, TypeError):
                token = None
            if token is None:
                log.error(
                    "reporter_auth_refused",
                    reporter=self.name,
                    status=answer.status,
                    answer=answer.text[:200],
                    buildid=build.get("buildid"),
                )
                return
            headers["Authorization"] = f"Bearer {token}"
        if build.get("complete"):
            state = "SUCCESSFUL" if build.get("results") == Results.SUCCESS else "FAILED"
        else:
            state = "INPROGRESS"
        assert self._env is not None
        props = properties_of(self._env, build)
        key = str(await props.render(self.status_key))
        body = {
            "state": state,
            "key": hashlib.sha1(key.encode()).hexdigest(),
            "name": await props.render(self.status_name),
            "description": reports[0].get("subject"),
            "url": build.get("url"),
        }
        for ss in (build.get("buildset") or {}).get("sourcestamps") or []:
            if not ss.get("repository"):
                log.info("reporter_skipped", reporter=self.name, why="no repository URL")
                continue
            owner, repo = self.get_owner_and_repo(ss["repository"])
            response = await self._http.post(
                f"/{owner}/{repo}/commit/{ss['revision']}/statuses/build",
                json=body,
                headers=headers,
            )
            if response.status not in (200, 201):
                log.error(
                    "reporter_push_refused",
                    reporter=self.name,
                    state=state,
                    repository=f"{owner}/{repo}",
                    status=response.status,
                    answer=response.text[:500],
                    buildid=build.get("buildid"),
                )
