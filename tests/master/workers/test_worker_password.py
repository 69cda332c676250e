"""A worker's password given as a secret: accepted for every worker kind, rendered from the
secret providers (:func:`render_passwords`), and what the latent workers hand to the worker
they start. (Real workers logging in with it: tests/e2e/test_worker_secret_password.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from buildyard.common.errors import ConfigErrors
from buildyard.master.model.properties import Interpolate, Secret, Transform, renderer
from buildyard.master.secrets.providers import SecretInAFile, lookup
from buildyard.master.workers.config import (
    AbstractLatentWorker,
    LatentMasterInfo,
    Worker,
    render_passwords,
)
from buildyard.master.workers.docker import DockerLatentWorker
from buildyard.master.workers.libvirt import LibVirtWorker

VALUE = "S3CR3T-VALUE"


@pytest.fixture
def providers(tmp_path: Path) -> list[SecretInAFile]:
    (tmp_path / "pw").write_text(VALUE + "\n")
    (tmp_path / "pw").chmod(0o600)
    return [SecretInAFile(str(tmp_path))]


async def test_secret_and_interpolate_passwords_render_from_the_providers(
    providers: list[SecretInAFile],
) -> None:
    plain = Worker("plain", "given")
    secret = Worker("s", Secret("pw"))
    interpolated = Worker("i", Interpolate("x-%(secret:pw)s"))
    custom = Worker("r", renderer(lambda props: "from-a-renderer"))
    assert plain.login_password == "given"
    assert [secret.login_password] == [None]  # not rendered yet: no login can succeed

    async def find(name: str) -> str | None:
        return await lookup(providers, name)

    await render_passwords([plain, secret, interpolated, custom], find)
    assert plain.login_password == "given"
    assert secret.login_password == VALUE
    assert interpolated.login_password == "x-" + VALUE
    assert custom.login_password == "from-a-renderer"
    # as in Buildbot, .password is the value from then on (custom latent workers read it);
    # the configuration keeps what was written, and shows no value
    assert secret.password == VALUE
    assert secret == Worker("s", Secret("pw"))
    assert VALUE not in repr(secret)


async def test_every_worker_that_cannot_render_is_named_without_any_value(
    providers: list[SecretInAFile],
) -> None:
    async def find(name: str) -> str | None:
        return await lookup(providers, name)

    workers = [
        Worker("ok", Secret("pw")),
        Worker("missing", Secret("nope")),
        Worker("number", renderer(lambda props: 5)),
        # a renderer that fails with the value in its message: the message is left out
        Worker("failing", Transform(int, Secret("pw"))),
    ]
    with pytest.raises(ConfigErrors) as raised:
        await render_passwords(workers, find)
    assert [e.message for e in raised.value.errors] == [
        "worker 'missing': its password Secret('nope') cannot be rendered: secret 'nope' is "
        "not found in any provider",
        f"worker 'number': its password {workers[2].password!r} rendered to int, not a "
        "non-empty string",
        f"worker 'failing': its password {workers[3].password!r} cannot be rendered: "
        "ValueError raised while rendering it",
    ]
    assert VALUE not in str(raised.value)
    assert raised.value.errors[0].location is not None  # the master.cfg line of the worker


def test_a_password_that_is_neither_a_string_nor_a_secret_is_refused() -> None:
    with pytest.raises(Exception, match=r"password must be a string or a secret .*not bytes"):
        Worker("w", b"bytes")


async def test_latent_workers_hand_the_rendered_password_to_their_instance(
    providers: list[SecretInAFile],
) -> None:
    docker = DockerLatentWorker("d", Secret("pw"), docker_host="unix:///nowhere", image="i")
    libvirt = LibVirtWorker("l", Secret("pw"), hd_image="/x.qcow2")

    class Mine(AbstractLatentWorker):
        pass

    mine = Mine("m", Secret("pw"))

    async def find(name: str) -> str | None:
        return await lookup(providers, name)

    await render_passwords([docker, libvirt, mine], find)
    docker.master_info = LatentMasterInfo(name="m", host="h", msgpack_port=9989, pb_port=9988)
    assert docker.createEnvironment()["WORKERPASS"] == VALUE
    assert f'password="{VALUE}"' in libvirt._auth_metadata()
    assert mine.login_password == mine.password == VALUE  # what its start_instance reads
