"""Where the files of a web UI are: ``c['www']['ui']``.

``"buildbot-www"`` is Buildbot's own UI, the ``buildbot_www`` package installed in this Python
(``pip install --no-deps buildbot-www==4.3.0``); it is found, never imported (its
``__init__`` imports Buildbot). A path names such a package's directory, or its ``static``
directory, installed anywhere (another virtual environment, say).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

BUILDBOT_WWW = "buildbot-www"


def locate(setting: str) -> Path:
    """The directory holding the UI's ``index.html``; ValueError saying what is missing."""
    if setting in (BUILDBOT_WWW, "buildbot_www"):
        spec = importlib.util.find_spec("buildbot_www")
        places = list(spec.submodule_search_locations or []) if spec is not None else []
        if not places:
            raise ValueError(
                "c['www']['ui'] = 'buildbot-www' needs the buildbot_www package in this Python: "
                "pip install --no-deps buildbot-www==4.3.0 (or give the path of its directory)"
            )
        base = Path(places[0])
    else:
        base = Path(setting).expanduser()
    for candidate in (base / "static", base):
        if (candidate / "index.html").is_file():
            return candidate
    raise ValueError(
        f"c['www']['ui']: no index.html in {base} or {base / 'static'} "
        f"(give {BUILDBOT_WWW!r} or the directory of an installed buildbot_www package)"
    )
