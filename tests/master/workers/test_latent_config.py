"""The latent workers' configuration: what master.cfg gets wrong is reported where it wrote it,
an engine whose extra is missing names the extra, and the small translations the engines need
(docker-py's host config keywords, results of user methods)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from buildyard.common.errors import ConfigErrors, collecting_config_errors
from buildyard.master.workers.config import AbstractLatentWorker, generated_password
from buildyard.master.workers.docker import DockerLatentWorker, host_config
from buildyard.master.workers.ec2 import EC2LatentWorker
from buildyard.master.workers.latent import LatentWorkers, _Latent, call_user
from buildyard.master.workers.libvirt import Connection, LibVirtWorker


def _errors(build: Any) -> list[str]:
    errors = ConfigErrors()
    with collecting_config_errors(errors):
        build()
    return [e.message for e in errors.errors]


def test_a_latent_worker_without_a_password_gets_one_that_lasts_the_process() -> None:
    first = DockerLatentWorker("d", None, image="x")
    again = DockerLatentWorker("d", None, image="x")
    assert first.password == again.password == generated_password("d") == first.getRandomPass()
    assert first == again  # a reconfig with the same arguments changes nothing
    assert DockerLatentWorker("e", None, image="x").password != first.password
    assert first.build_wait_timeout == 0  # Docker's default: a container per build
    assert AbstractLatentWorker("a").build_wait_timeout == 600


def test_docker_arguments_are_checked() -> None:
    assert _errors(lambda: DockerLatentWorker("d", None)) == [
        "worker 'd': DockerLatentWorker needs an image name or a dockerfile"
    ]
    assert _errors(lambda: DockerLatentWorker("d", None, image="x", volumes=["/only"])) == [
        "worker 'd': volume '/only' is not 'host path:container path[:ro]'"
    ]
    (message,) = _errors(lambda: DockerLatentWorker("d", None, image="x", hostconfig={"bogus": 1}))
    assert message.startswith("worker 'd': hostconfig key 'bogus' is not known")
    assert _errors(lambda: DockerLatentWorker("d", None, image="x", master_protocol="ws")) == [
        "worker 'd': master_protocol must be 'pb' or 'msgpack'"
    ]
    soon: Any = "soon"
    assert _errors(lambda: AbstractLatentWorker("a", build_wait_timeout=soon)) == [
        "worker 'a': build_wait_timeout must be a number of seconds"
    ]


def test_docker_host_config_takes_docker_py_keywords_and_engine_fields() -> None:
    assert host_config(
        {
            "network_mode": "host",
            "mem_limit": "512m",
            "extra_hosts": {"db": "10.0.0.2"},
            "restart_policy": {"name": "no"},
            "PidsLimit": 100,
        }
    ) == {
        "NetworkMode": "host",
        "Memory": 512 * 1024**2,
        "ExtraHosts": ["db:10.0.0.2"],
        "RestartPolicy": {"Name": "no"},
        "PidsLimit": 100,
    }


def test_ec2_without_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 now raises ImportError
    (message,) = _errors(
        lambda: EC2LatentWorker("e", "p", "t3.micro", ami="ami-1", keypair_name="k")
    )
    assert message == (
        "worker 'e': EC2LatentWorker needs boto3, not installed: pip install 'buildyard[ec2]'"
    )


def test_ec2_arguments_are_checked() -> None:
    pytest.importorskip("boto3")
    assert _errors(lambda: EC2LatentWorker("e", "p", "t3.micro", ami="ami-1")) == [
        "worker 'e': EC2LatentWorker: 'keypair_name' parameter must be specified",
        "worker 'e': EC2LatentWorker: 'security_name' parameter must be specified",
    ]
    both = _errors(
        lambda: EC2LatentWorker(
            "e",
            "p",
            "t3.micro",
            ami="ami-1",
            valid_ami_owners=[1],
            keypair_name="k",
            security_name="s",
        )
    )
    assert both == [
        "worker 'e': give either a specific ami, or one or both of valid_ami_location_regex "
        "and valid_ami_owners"
    ]
    region = _errors(
        lambda: EC2LatentWorker(
            "e",
            "p",
            "t3.micro",
            ami="ami-1",
            keypair_name="k",
            security_name="s",
            region="moon-1",
            identifier="a",
            secret_identifier="b",
        )
    )
    assert region == ["worker 'e': the specified region does not exist: moon-1"]


async def test_user_methods_may_return_values_coroutines_or_deferreds() -> None:
    from twisted.internet import defer

    async def coroutine() -> bool:
        return True

    assert await call_user(True) is True
    assert await call_user(coroutine()) is True
    assert await call_user(defer.succeed("done")) == "done"
    with pytest.raises(ValueError, match="boom"):
        await call_user(defer.fail(ValueError("boom")))
    # a Deferred that fires later is waited for (awaiting it directly would fail with
    # "Task got bad yield")
    later: defer.Deferred[str] = defer.Deferred()
    asyncio.get_running_loop().call_later(0.01, later.callback, "later")
    assert await call_user(later) == "later"
    failing: defer.Deferred[str] = defer.Deferred()
    asyncio.get_running_loop().call_later(0.01, failing.errback, RuntimeError("late boom"))
    with pytest.raises(RuntimeError, match="late boom"):
        await call_user(failing)


def test_libvirt_without_bindings_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "libvirt", None)
    (message,) = _errors(lambda: LibVirtWorker("v", "p", uri=Connection("test:///default")))
    assert message.startswith(
        "worker 'v': LibVirtWorker needs the libvirt bindings, not installed: "
        "pip install 'buildyard[libvirt]'"
    )


async def test_cancelling_a_start_while_its_follower_ends_still_cancels_it() -> None:
    # the worker connected, and the start waits for while_starting() to end after its cancel;
    # a cancel of the start arriving then must not be taken for the follower's own
    follower_cancelled = asyncio.Event()
    release = asyncio.Event()

    class Slow(AbstractLatentWorker):
        async def while_starting(self) -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                follower_cancelled.set()
                await release.wait()  # cleaning up takes a while
                raise

    config = Slow("slow", check_instance_interval=60)
    latent = _Latent(config)
    start = asyncio.get_running_loop().create_task(
        LatentWorkers._wait_connected(None, latent, config)  # type: ignore[arg-type]
    )
    await asyncio.sleep(0)
    latent.connected.set()
    async with asyncio.timeout(10):
        await follower_cancelled.wait()
    start.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(10):
            await start
    assert start.cancelled()


def test_the_worker_environment_names_the_master_and_its_port() -> None:
    from buildyard.master.workers.config import (
        LatentMasterInfo,
        LatentWorkerCannotSubstantiate,
        worker_environment,
    )

    info = LatentMasterInfo(name="m", host="h", msgpack_port=9990, pb_port=None)
    env = worker_environment(info, fqdn="ci.example", protocol="msgpack", name="w", password=7)
    assert env == {
        "BUILDMASTER": "ci.example",
        "BUILDMASTER_PORT": "9990",
        "BUILDMASTER_PROTOCOL": "msgpack",
        "WORKERNAME": "w",
        "WORKERPASS": "7",
    }
    # masterFQDN "host:port" names the port itself
    env = worker_environment(info, fqdn="gw:1234", protocol="pb", name="w", password="p")
    assert (env["BUILDMASTER"], env["BUILDMASTER_PORT"]) == ("gw", "1234")
    with pytest.raises(LatentWorkerCannotSubstantiate, match=r"master_protocol 'pb'.*no such"):
        worker_environment(info, fqdn="ci.example", protocol="pb", name="w", password="p")
