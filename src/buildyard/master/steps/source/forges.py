"""``steps.GitHub`` and ``steps.GitLab``: ``steps.Git`` that checks out what a pull or merge
request proposes, from what the change hooks and pollers put in the build (Buildbot 4.3's).

- :class:`GitHub`: a branch ending in ``/merge`` (``refs/pull/<n>/merge``: the GitHub hook with
  ``pullrequest_ref='merge'``, the pull request poller with ``magic_link=True``) names a commit
  GitHub computes and moves: the step fetches that ref and checks out what it names now, not
  the revision of the change.
- :class:`GitLab`: in a build of a merge request (the GitLab hook sets the property
  ``target_branch``), the step fetches the property ``source_branch`` from the repository of
  ``source_git_ssh_url`` (the fork the request comes from), whatever the step's ``repourl``,
  and checks out its newest commit. A step whose ``repourl`` is not the merge request's target
  repository (``target_git_ssh_url``) logs a note: such a builder is likely mis-configured.
"""

from __future__ import annotations

from typing import Any

import structlog

from buildyard.master.steps.base import BuildStepFailed
from buildyard.master.steps.source.base import Patch
from buildyard.master.steps.source.git import Git

__all__ = ["GitHub", "GitLab"]

log = structlog.get_logger(__name__)


class GitHub(Git):
    async def run_vc(self, branch: Any, revision: str | None, patch: Patch | None) -> int:
        if isinstance(branch, str) and branch.endswith("/merge"):
            revision = None
        return await super().run_vc(branch, revision, patch)


class GitLab(Git):
    async def run_vc(self, branch: Any, revision: str | None, patch: Patch | None) -> int:
        if self.hasProperty("target_branch"):
            target = self.getProperty("target_git_ssh_url", None)
            source = self.getProperty("source_git_ssh_url", None)
            if not source:
                raise BuildStepFailed(
                    "GitLab: the build is of a merge request (property target_branch) but has "
                    "no source_git_ssh_url property to fetch it from"
                )
            if isinstance(target, str) and target:
                # GitLab's ssh addresses are scp-like; the step's repourl is a URL
                wanted = target if target.startswith("ssh://") else f"ssh://{target}"
                if str(self.repourl) != wanted:
                    log.info(
                        "gitlab_step_repourl_note",
                        step=self.name,
                        repourl=str(self.repourl),
                        target=wanted,
                        note="a GitLab step for merge requests should probably have the "
                        "target repository as its repourl",
                    )
            branch = self.getProperty("source_branch", None)
            self.repourl = str(source)
            revision = None  # the source repository's commit: not in the target repository
        return await super().run_vc(branch, revision, patch)
