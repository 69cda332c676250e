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


#: Buildbot UI plugins that are server-side code (Klein/Twisted), not files the UI loads
SERVER_SIDE_PLUGINS = {"badges": "it draws badge images on the server (Twisted code)"}


def locate_plugin(name: str, ui_static: Path) -> Path | None:
    """The ``static`` directory of the Buildbot UI plugin ``name`` (package ``buildbot_<name>``,
    e.g. ``buildbot_waterfall_view``): installed in this Python, or beside the UI's package
    (the same site-packages, as ``pip install buildbot-waterfall-view`` puts it next to
    buildbot-www). Found, never imported (its ``__init__`` imports Buildbot); None if absent."""
    package = f"buildbot_{name}"
    places: list[Path] = []
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        places += [Path(p) for p in spec.submodule_search_locations or []]
    ui_package = ui_static.parent if ui_static.name == "static" else ui_static
    places.append(ui_package.parent / package)
    for place in places:
        if (place / "static" / "scripts.js").is_file():
            return place / "static"
    return None


def locate_plugins(names: object, ui_static: Path) -> dict[str, Path]:
    """Each named plugin's ``static`` directory; ValueError naming those not installed or not
    served (server-side ones)."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key in names if isinstance(names, dict) else ():
        name = str(key)
        if name in SERVER_SIDE_PLUGINS:
            continue  # warned by the config check
        where = locate_plugin(name, ui_static)
        if where is None:
            missing.append(name)
        else:
            found[name] = where
    if missing:
        raise ValueError(
            f"c['www']['plugins']: no Buildbot UI plugin {', '.join(map(repr, missing))} beside "
            f"{ui_static} or in this Python (pip install "
            f"{' '.join('buildbot-' + m.replace('_', '-') for m in missing)} where buildbot-www "
            "is)"
        )
    return found
