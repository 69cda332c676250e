"""docs/not-implemented.md lists exactly the stand-ins of buildyard.plugins, each under the
feature its error message names."""

from __future__ import annotations

import re
from pathlib import Path

from buildyard.common.config_object import is_placeholder
from buildyard.plugins import changes, reporters, schedulers, secrets, steps, util, worker

DOC = Path(__file__).parents[2] / "docs" / "not-implemented.md"


def _stand_ins() -> set[tuple[str, str, str]]:
    found: set[tuple[str, str, str]] = set()
    spaces: dict[str, object] = {"util.repo": util.repo, "util.svn": util.svn}
    for module in (worker, steps, schedulers, changes, reporters, secrets, util):
        spaces[module.__name__.rpartition(".")[2]] = module
    for space, holder in spaces.items():
        for name in dir(holder):
            value = getattr(holder, name, None)
            if not name.startswith("_") and is_placeholder(value):
                found.add((space, name, value._placeholder_feature))  # type: ignore[union-attr]
    return found


def _listed() -> set[tuple[str, str, str]]:
    listed: set[tuple[str, str, str]] = set()
    heading: tuple[str, str] | None = None
    for line in DOC.read_text().splitlines():
        if match := re.fullmatch(r"## `([\w.]+)` \((.+)\)", line):
            heading = (match[1], match[2])
        elif line.startswith("#"):
            heading = None
        elif heading is not None:
            listed.update((heading[0], n, heading[1]) for n in re.findall(r"`(\w+)`", line))
    return listed


def test_the_list_is_the_stand_ins() -> None:
    stand_ins, listed = _stand_ins(), _listed()
    assert stand_ins, "no stand-ins found"
    assert sorted(stand_ins - listed) == [], "implemented yet not listed? add them to the doc"
    assert sorted(listed - stand_ins) == [], "listed but implemented (or renamed): update the doc"
