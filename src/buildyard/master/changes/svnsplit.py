"""``util.svn.split_file_*``: how an ``SVNPoller`` tells a changed path's branch from its file.

``SVNPoller(split_file=...)`` is given each path a commit touched, relative to the polled URL
(``trunk/src/main.c``; a directory ends with ``/``), and answers what the path is:

- ``None``: not part of anything watched; the path is left out of the changes;
- a pair ``(branch, file)``: the branch (None for the default branch) and the file in it;
- a dict with ``path`` (the file) and optionally ``branch``, ``project``, ``repository`` and
  ``codebase``, which the change then carries instead of the poller's own values.

The three ready-made answers are Buildbot 4.3's, with the same results for the same paths:

- :func:`split_file_alwaystrunk`: the whole URL is one branch (the default one);
- :func:`split_file_branches`: ``trunk/...`` is the default branch, ``branches/NAME/...`` the
  branch ``branches/NAME``; anything else (``tags/...``) is left out;
- :func:`split_file_projects_branches`: the same one level down, under a project directory
  (``PROJECT/trunk/...``), which becomes the change's project.

This module imports nothing: ``util.svn`` names it without loading the poller.
"""

from __future__ import annotations

__all__ = ["split_file_alwaystrunk", "split_file_branches", "split_file_projects_branches"]


def split_file_alwaystrunk(path: str) -> dict[str, str]:
    """Every path belongs to the default branch, as it is."""
    return {"path": path}


def split_file_branches(path: str) -> tuple[str | None, str] | None:
    """``trunk/a/b`` -> ``(None, "a/b")``; ``branches/x/a/b`` -> ``("branches/x", "a/b")``;
    the branch's own directory (``trunk/``, ``branches/x/``) has the file ``""``. Other paths,
    and ``trunk`` or ``branches/x`` without their slash, are None."""
    top, slash, rest = path.partition("/")
    if not slash:
        return None
    if top == "trunk":
        return (None, rest)
    if top == "branches":
        name, slash, inside = rest.partition("/")
        if slash:
            return (f"branches/{name}", inside)
    return None


def split_file_projects_branches(path: str) -> dict[str, str] | None:
    """``PROJECT/trunk/a`` -> ``{"project": PROJECT, "path": "a"}``;
    ``PROJECT/branches/x/a`` adds ``"branch": "branches/x"``; None for anything else."""
    project, slash, rest = path.partition("/")
    if not slash:
        return None
    found = split_file_branches(rest)
    if found is None:
        return None
    branch, inside = found
    info = {"project": project, "path": inside}
    if branch:
        info["branch"] = branch
    return info
