"""``steps.GitDiffInfo``: what the checkout changes against a reference, as build data.

As Buildbot 4.3's step does, in the work directory on the worker: ``git merge-base HEAD
<compareToRef>`` (its output in the log ``stdio-merge-base``; the commit becomes the property
``diffinfo-merge-base-commit``), then ``git diff --no-prefix -U0 <that commit> HEAD`` (log
``stdio-diff``). The diff is stored as the build data ``dataName`` (``diffinfo-master`` by
default): a JSON list with, for each file, ``source_file`` and ``target_file`` (``/dev/null``
for an added or a removed file), ``is_binary``, ``is_rename`` and its hunks as ``{"ss", "sl",
"ts", "tl"}`` (the start and length of the hunk in the old and the new file). A command that
fails ends the step with its result; no data is stored then.
"""

from __future__ import annotations

import json
import re
from typing import Any

from buildyard.master.model.results import Results
from buildyard.master.steps.base import BuildStep, ShellMixin

__all__ = ["GitDiffInfo", "parse_diff"]

DEV_NULL = "/dev/null"
_GIT_HEADER = re.compile(r"^diff --git (?P<source>\S+) (?P<target>\S+)$")
_HUNK = re.compile(r"^@@ -(?P<ss>\d+)(?:,(?P<sl>\d+))? \+(?P<ts>\d+)(?:,(?P<tl>\d+))? @@")
_BINARY = re.compile(r"^Binary files (?P<source>.+?) and (?P<target>.+?) differ$")


def _name(text: str) -> str:
    """A file name of a ``---``/``+++`` line: without the tab and timestamp after it."""
    return text.split("\t", 1)[0].rstrip()


def parse_diff(text: str) -> list[dict[str, Any]]:
    """The files of a unified git diff, as GitDiffInfo stores them."""
    files: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        header = _GIT_HEADER.match(line)
        if header is not None:
            current = {
                "source_file": header["source"],
                "target_file": header["target"],
                "is_binary": False,
                "hunks": [],
            }
            files.append(current)
            continue
        if current is None:
            continue
        if line.startswith("new file mode "):
            current["source_file"] = DEV_NULL
        elif line.startswith("deleted file mode "):
            current["target_file"] = DEV_NULL
        elif line.startswith("--- ") and not current["hunks"]:
            current["source_file"] = _name(line[4:])
        elif line.startswith("+++ ") and not current["hunks"]:
            current["target_file"] = _name(line[4:])
        elif (binary := _BINARY.match(line)) is not None:
            current["source_file"] = binary["source"]
            current["target_file"] = binary["target"]
            current["is_binary"] = True
        elif (hunk := _HUNK.match(line)) is not None:
            current["hunks"].append(
                {
                    "ss": int(hunk["ss"]),
                    "sl": int(hunk["sl"]) if hunk["sl"] is not None else 1,
                    "ts": int(hunk["ts"]),
                    "tl": int(hunk["tl"]) if hunk["tl"] is not None else 1,
                }
            )
    for found in files:
        source, target = found["source_file"], found["target_file"]
        # a rename, as Buildbot's diff parser tells it: both names, differing past the
        # two-character prefix that diffs usually give (a/, b/)
        found["is_rename"] = DEV_NULL not in (source, target) and source[2:] != target[2:]
    return [
        {
            "source_file": f["source_file"],
            "target_file": f["target_file"],
            "is_binary": f["is_binary"],
            "is_rename": f["is_rename"],
            "hunks": f["hunks"],
        }
        for f in files
    ]


class GitDiffInfo(ShellMixin, BuildStep):
    name = "GitDiffInfo"
    description: Any = "running GitDiffInfo"
    descriptionDone: Any = "GitDiffInfo"

    def __init__(
        self, compareToRef: Any = "master", dataName: Any = "diffinfo-master", **kwargs: Any
    ) -> None:
        rest = self.setupShellMixin(kwargs, prohibitArgs=["command"])
        super().__init__(**rest)
        self.compareToRef: Any = compareToRef
        self.dataName: Any = dataName

    async def run(self) -> int:
        ref = await self.render(self.compareToRef)
        cmd = await self.makeRemoteShellCommand(
            command=["git", "merge-base", "HEAD", str(ref)],
            stdioLogName="stdio-merge-base",
            collectStdout=True,
        )
        await self.runCommand(cmd)
        await self.getLog("stdio-merge-base").finish()
        if cmd.results() != Results.SUCCESS:
            return int(cmd.results())
        commit = cmd.stdout.strip()
        self.setProperty("diffinfo-merge-base-commit", commit, "GitDiffInfo")
        diff = await self.makeRemoteShellCommand(
            command=["git", "diff", "--no-prefix", "-U0", commit, "HEAD"],
            stdioLogName="stdio-diff",
            collectStdout=True,
        )
        await self.runCommand(diff)
        if diff.results() != Results.SUCCESS:
            return int(diff.results())
        data = json.dumps(parse_diff(diff.stdout)).encode("utf-8")
        await self.setBuildData(str(await self.render(self.dataName)), data, "GitDiffInfo")
        return int(diff.results())
