"""``steps.Gerrit``: a :class:`~buildyard.master.steps.source.git.Git` step that checks out the
Gerrit change a build is for.

When the build's source stamp is of the project the Gerrit event names (the
``event.change.project`` property), the step fetches the change's ref instead of the source
stamp's branch: the ``event.patchSet.ref`` property (``refs/changes/45/12345/2``), or else one
made from the ``gerrit_change`` property (``"12345/2"``: change/patch set). The ref is kept in
the ``gerrit_branch`` property. For any other source stamp (another project, or a build of no
Gerrit change) it is the plain ``Git`` step. Every argument is ``Git``'s.
"""

from __future__ import annotations

from typing import Any

from buildyard.master.steps.source.base import Patch
from buildyard.master.steps.source.git import Git

__all__ = ["Gerrit", "change_ref"]


def change_ref(change: int, patchset: int) -> str:
    """Gerrit's ref of a patch set: ``refs/changes/<last two digits>/<change>/<patch set>``."""
    return f"refs/changes/{change % 100:02d}/{change}/{patchset}"


class Gerrit(Git):
    async def run_vc(self, branch: Any, revision: str | None, patch: Patch | None) -> int:
        gerrit_branch: str | None = None
        project = self.getProperty("event.change.project")
        if self.sourcestamp is not None and getattr(self.sourcestamp, "project", None) == project:
            if self.hasProperty("event.patchSet.ref"):
                gerrit_branch = str(self.getProperty("event.patchSet.ref"))
            else:
                parts = str(self.getProperty("gerrit_change", "") or "").split("/")
                if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
                    gerrit_branch = change_ref(int(parts[0]), int(parts[1]))
            if gerrit_branch is not None:
                self.updateSourceProperty("gerrit_branch", gerrit_branch)
        return await super().run_vc(gerrit_branch or branch, revision, patch)
