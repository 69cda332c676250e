"""``OpenStackLatentWorker`` against :mod:`buildyard.testing.openstack_cloud` in this process:
what master.cfg gets wrong, novaclient's ``nova_args`` as Nova's fields, Keystone's bodies for
each way of authenticating, a token refused mid-way, and the failures of a start (an unknown
image, a server that ends in ERROR)."""

from __future__ import annotations

import base64
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from buildyard.common.errors import ConfigErrors, collecting_config_errors
from buildyard.master.model.properties import Properties
from buildyard.master.workers.config import LatentMasterInfo, LatentWorkerCannotSubstantiate
from buildyard.master.workers.latent import LatentBuild
from buildyard.master.workers.openstack import (
    OpenStackError,
    OpenStackLatentWorker,
    _Cloud,
    _nova_body,
)
from buildyard.testing.openstack_cloud import FakeCloud, image_id
from buildyard.testing.postgres import free_port


def _errors(build: Any) -> list[str]:
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        build()
    return [e.message for e in errors.errors]


AUTH = {"os_auth_url": "http://keystone/v3", "os_username": "u", "os_password": "p"}


def test_bad_configuration_names_the_argument() -> None:
    assert _errors(lambda: OpenStackLatentWorker("o", "pw", "m1", **AUTH)) == [
        "worker 'o': one of block_devices or image must be given"
    ]
    assert _errors(lambda: OpenStackLatentWorker("o", "pw", "m1", image="i")) == [
        "worker 'o': os_auth_url is required (or os_auth_args with auth_url)",
        "worker 'o': os_username and os_password are required (or os_auth_args)",
    ]
    assert _errors(
        lambda: OpenStackLatentWorker("o", "pw", "m1", image="i", os_auth_args={"username": "u"})
    ) == ["worker 'o': os_auth_args has no 'auth_url'"]
    args = {"auth_url": "http://k/v3", "auth_type": "saml2"}
    assert _errors(
        lambda: OpenStackLatentWorker("o", "pw", "m1", image="i", os_auth_args=args)
    ) == [
        "worker 'o': os_auth_args auth_type 'saml2' is not supported (supported: password, "
        "v3password, v3applicationcredential, token, v3token)"
    ]
    old = {**AUTH, "os_auth_url": "http://127.0.0.1:35357/v2.0"}
    assert _errors(lambda: OpenStackLatentWorker("o", "pw", "m1", image="i", **old)) == [
        "worker 'o': auth_url 'http://127.0.0.1:35357/v2.0' is Keystone v2.0, which OpenStack "
        "removed; give the v3 URL (.../v3, or the identity service's root)"
    ]
    assert _errors(
        lambda: OpenStackLatentWorker("o", "pw", "m1", image="i", client_version="1.1", **AUTH)
    ) == ["worker 'o': client_version must be '2' or '2.<microversion>', not '1.1'"]
    assert _errors(
        lambda: OpenStackLatentWorker("o", "pw", "m1", block_devices=[{"size": 1}], **AUTH)
    ) == ["worker 'o': a block device needs 'uuid' (the image, snapshot or volume)"]
    assert _errors(
        lambda: OpenStackLatentWorker(
            "o", "pw", "m1", block_devices=[{"uuid": "x", "source_type": "disk"}], **AUTH
        )
    ) == ["worker 'o': block device source_type must be one of image, snapshot, volume, blank"]
    assert _errors(lambda: OpenStackLatentWorker("o", "pw", "m1", image=3, **AUTH)) == [
        "worker 'o': image must be a name, an id, or a function choosing one"
    ]
    assert _errors(lambda: OpenStackLatentWorker("o", "pw", "m1", image="i", meta=[1], **AUTH)) == [
        "worker 'o': meta must be a dictionary"
    ]
    worker = OpenStackLatentWorker("o", "pw", 1, image="i", os_tenant_name="t", **AUTH)
    assert worker.os_auth_args == {
        "auth_url": "http://keystone/v3",
        "username": "u",
        "password": "p",
        "project_name": "t",
    }
    assert worker.build_wait_timeout == 600  # the latent default, as in Buildbot


def test_nova_args_take_novaclient_names() -> None:
    assert _nova_body(
        {
            "nics": [
                {"net-id": "n1"},
                {"port-id": "p1"},
                {"net-id": "n2", "v4-fixed-ip": "10.0.0.9"},
            ],
            "security_groups": ["default", "ssh"],
            "userdata": "#!/bin/sh\necho hi\n",
            "scheduler_hints": {"group": "g1"},
            "availability_zone": "nova",
            "config_drive": True,
        }
    ) == {
        "networks": [{"uuid": "n1"}, {"port": "p1"}, {"uuid": "n2", "fixed_ip": "10.0.0.9"}],
        "security_groups": [{"name": "default"}, {"name": "ssh"}],
        "user_data": base64.b64encode(b"#!/bin/sh\necho hi\n").decode(),
        "os:scheduler_hints": {"group": "g1"},
        "availability_zone": "nova",
        "config_drive": True,
    }
    assert _nova_body({"nics": "auto"}) == {"networks": "auto"}


def test_keystone_bodies_for_each_way_of_authenticating() -> None:
    cloud = _Cloud({}, None, "2")
    password = cloud._auth_body(
        {
            "username": "ci",
            "password": "pw",
            "project_name": "builds",
            "user_domain_name": "corp",
            "project_domain_id": "d42",
        }
    )
    assert password == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"password": "pw", "name": "ci", "domain": {"name": "corp"}}},
            },
            "scope": {"project": {"name": "builds", "domain": {"id": "d42"}}},
        }
    }
    credential = cloud._auth_body(
        {
            "auth_type": "v3applicationcredential",
            "application_credential_id": "ac1",
            "application_credential_secret": "s",
        }
    )
    assert credential["auth"]["identity"] == {
        "methods": ["application_credential"],
        "application_credential": {"secret": "s", "id": "ac1"},
    }
    assert "scope" not in credential["auth"]  # an application credential carries its own
    token = cloud._auth_body({"auth_type": "token", "token": "t0", "project_id": "p1"})
    assert token["auth"] == {
        "identity": {"methods": ["token"], "token": {"id": "t0"}},
        "scope": {"project": {"id": "p1"}},
    }


# -- a served stand-in ----------------------------------------------------------------------------

SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]
FAIL = [sys.executable, "-c", "raise SystemExit(3)"]


@pytest.fixture
async def cloud(tmp_path: Path) -> AsyncIterator[tuple[FakeCloud, str]]:
    fake = FakeCloud(
        tmp_path / "servers",
        {"ci": ("pw", "proj", None)},
        {"sleeper": SLEEP, "crasher": FAIL},
        ["m1.small"],
    )
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield fake, f"http://127.0.0.1:{port}/identity"
    finally:
        await runner.cleanup()


def _worker(url: str, **kw: Any) -> OpenStackLatentWorker:
    kw.setdefault("image", "sleeper")
    worker = OpenStackLatentWorker(
        "o_1", "pw", "m1.small", os_auth_url=url, os_username="ci", os_password="pw",
        os_tenant_name="proj", **kw,
    )  # fmt: skip
    worker._poll_resolution = 0.1
    worker.master_info = LatentMasterInfo(name="m", host="127.0.0.1", msgpack_port=1, pb_port=None)
    return worker


async def test_start_check_stop_and_a_token_revoked_mid_way(cloud: tuple[FakeCloud, str]) -> None:
    fake, url = cloud
    worker = _worker(url)
    assert await worker.start_instance(LatentBuild(Properties()))
    assert worker.instance is not None
    assert worker.instance["image"] == image_id("sleeper")
    assert await worker.check_instance() == (True, "")
    fake.tokens.clear()  # Keystone forgot the token: the next call authenticates again
    assert await worker.check_instance() == (True, "")
    posts = [r["path"] for r in fake.requests if r["method"] == "POST"]
    assert posts == [
        "/identity/v3/auth/tokens",
        "/compute/v2.1/servers",
        "/identity/v3/auth/tokens",
    ]
    await worker.stop_instance()
    assert fake.servers == {}  # waited until it was gone


async def test_start_failures(cloud: tuple[FakeCloud, str]) -> None:
    fake, url = cloud
    with pytest.raises(LatentWorkerCannotSubstantiate, match="Cannot find OpenStack image nope"):
        await _worker(url, image="nope").start_instance(LatentBuild(Properties()))
    wrong = OpenStackLatentWorker(
        "o_2", "pw", "m1.small", image="sleeper", os_auth_url=url, os_username="ci",
        os_password="wrong", os_tenant_name="proj",
    )  # fmt: skip
    wrong.master_info = LatentMasterInfo(name="m", host="h", msgpack_port=1, pb_port=None)
    with pytest.raises(OpenStackError, match="keystone refused the credentials: 401"):
        await wrong.start_instance(LatentBuild(Properties()))
    assert fake.servers == {}
    # a server whose image's boot ends at once: SHUTOFF, and check_instance says so
    crasher = _worker(url, image="crasher")
    await crasher.start_instance(LatentBuild(Properties()))
    (server,) = fake.servers.values()
    assert server.process.proc is not None
    await server.process.proc.wait()
    ok, why = await crasher.check_instance()
    assert (ok, why) == (False, f"server {server.id} is SHUTOFF")
    await crasher.stop_instance(fast=True)
