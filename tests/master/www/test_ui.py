"""buildbot-www 4.3.0 served by a real master: index with the frontend config, assets, /config,
/api, and config errors for a UI that cannot be found."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest

from buildyard.common.errors import ConfigErrors
from buildyard.master.config.loader import load_master_config
from buildyard.master.www import ui
from buildyard.testing.masters import running_master
from buildyard.testing.postgres import free_port
from buildyard.testing.stock import buildbot_site_packages

BODY = """
c['builders'] = [util.BuilderConfig(name="b", workernames=["w1"], factory=util.BuildFactory())]
c['title'] = "Yard </script> \u00e9"
c['buildbotURL'] = "http://127.0.0.1:{port}/"
c['www'] = {{'port': {port}, 'ui': {ui!r}, 'ui_default_config': {{'Builders.buildFetchLimit': 5}}}}
"""


def _buildbot_www() -> Path:
    return buildbot_site_packages() / "buildbot_www"


async def test_buildbot_www_is_served_with_its_config(tmp_path: Path) -> None:
    port = free_port()
    body = BODY.format(port=port, ui=str(_buildbot_www()))
    async with running_master(tmp_path, body), aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{port}"
        async with http.get(f"{base}/") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/html"
            html = await resp.text()
        assert "BUILDBOT_CONFIG_PLACEHOLDER" not in html
        found = re.search(r"window\.buildbotFrontendConfig = (.*?);</script>", html)
        assert found is not None
        injected = json.loads(found.group(1))
        assert injected["buildbotURL"] == f"http://127.0.0.1:{port}/"
        assert injected["title"] == "Yard </script> \u00e9"  # escaped in the page, whole in JSON
        assert "</script> " not in found.group(1) and "\u00e9" not in found.group(1)
        assert injected["auth"]["name"] == "NoAuth" and injected["auth"]["oauth2"] is False
        assert injected["user"] == {"anonymous": True}
        assert injected["ui_default_config"] == {"Builders.buildFetchLimit": 5}
        assert ["Buildbot", "4.3.0"] in injected["versions"]

        # every asset index.html names is there, byte for byte
        static = _buildbot_www() / "static"
        assets = re.findall(r'(?:src|href)="\./([^"]+)"', html)
        assert any(a.startswith("assets/") and a.endswith(".js") for a in assets)
        for asset in assets:
            async with http.get(f"{base}/{asset}") as resp:
                assert resp.status == 200, asset
                assert await resp.read() == (static / asset).read_bytes()
        async with http.get(f"{base}/icon.svg") as resp:
            assert resp.status == 200
        # the UI asks for its icon at buildbotURL + "/icon.png"
        async with http.get(f"{base}//icon.png") as resp:
            assert resp.status == 200
            assert await resp.read() == (static / "icon.png").read_bytes()

        async with http.get(f"{base}/config") as resp:
            assert await resp.json() == injected
        async with http.get(f"{base}/api") as resp:
            assert await resp.json() == {"api_versions": {"v2": f"http://127.0.0.1:{port}/api/v2"}}
        # the API still answers beside the UI
        async with http.get(f"{base}/api/v2/builders") as resp:
            assert [b["name"] for b in json.loads(await resp.text())["builders"]] == ["b"]
        async with http.get(f"{base}/assets/nothing-here.js") as resp:
            assert resp.status == 404


@pytest.mark.parametrize(
    ("ui", "message"),
    [
        ("/nowhere/at/all", "no index.html in /nowhere/at/all"),
        (42, "c['www']['ui'] must be a string, not int"),
    ],
)
def test_a_ui_that_cannot_be_found_is_a_config_error(
    tmp_path: Path, ui: object, message: str
) -> None:
    (tmp_path / "master.cfg").write_text(
        "from buildyard.plugins import *\n"
        "c = BuildmasterConfig = {}\n"
        "c['workers'] = [worker.Worker('w1', 'pw')]\n"
        "c['protocols'] = {'msgpack_experimental_v7': {'port': 0}}\n"
        "c['builders'] = [util.BuilderConfig(name='b', workernames=['w1'], "
        "factory=util.BuildFactory())]\n"
        f"c['www'] = {{'port': 0, 'ui': {ui!r}}}\n"
    )
    with pytest.raises(ConfigErrors) as caught:
        load_master_config(tmp_path)
    [error] = caught.value.errors
    assert message in error.message


def test_the_users_versions_follow_the_masters() -> None:
    config = ui.frontend_config(
        title="t",
        title_url="http://t/",
        buildbot_url="http://b/",
        multi_master=False,
        www={"versions": [("mine", "1.0"), ("other", "2", "extra")]},
    )
    assert ["Buildbot", "4.3.0"] in config["versions"]
    assert config["versions"][-2:] == [["mine", "1.0"], ["other", "2", "extra"]]
