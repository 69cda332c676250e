"""``worker.EC2LatentWorker`` with a real master process against moto's EC2 server.

moto answers the EC2 API but boots nothing, so this test plays the machine: a thread watches
moto, and when an instance of the master's is reported running it starts a buildyard-worker with
what the instance's user data says (master address, name, password), as an AMI's boot script
would; when the instance is terminated it ends that worker.

One master shows the lifecycle: a build starts an on-demand instance (AMI, instance type, key
pair, security group, tags, user data, an EBS volume attached); a second build within
``build_wait_timeout`` reuses it; idle past the timeout it is terminated; a worker whose AMI
constraints match no image fails its start and goes into quarantine while the request runs on
a spot instance (``spot_instance``, priced from moto's spot price history). A second master is
SIGKILLed with an instance running and restarted: the instance is terminated.
"""

from __future__ import annotations

import base64
import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from buildyard.testing.latent import LatentMaster
from buildyard.testing.postgres import free_port
from buildyard.testing.processes import end_popen, ended_at_exit, wait_for

boto3 = pytest.importorskip("boto3")

pytestmark = pytest.mark.e2e

OWNER = 801119661308  # the owner of moto's stock AMIs ("amazon/getting-started")
PASSWORD = "ec2-worker-secret"

HEAD = """\
from buildyard.plugins import *
c = BuildmasterConfig = {{}}
def ec2(name, **kw):
    kw.setdefault('valid_ami_owners', [{owner}])
    kw.setdefault('valid_ami_location_regex', r'amazon/getting-started')
    return worker.EC2LatentWorker(name, {password!r}, 't3.micro', keypair_name='buildyard',
        security_name='buildyard-workers', region='us-east-1',
        user_data=f'127.0.0.1:{port} {{name}} {password}', **kw)
"""


class Cloud:
    """moto's server, a client of it, and the thread that plays the instances' boot."""

    def __init__(self, endpoint: str, workdir: Path) -> None:
        self.endpoint = endpoint
        self.workdir = workdir
        session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        self.client = session.client("ec2", endpoint_url=endpoint)
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def instances(self, worker: str, states: tuple[str, ...] = ("pending", "running")) -> list[Any]:
        found = self.client.describe_instances(
            Filters=[
                {"Name": "tag:buildyard.worker", "Values": [worker]},
                {"Name": "instance-state-name", "Values": list(states)},
            ]
        )
        return [i for r in found["Reservations"] for i in r["Instances"]]

    def all_instances(self, worker: str) -> list[Any]:
        return self.instances(worker, ("pending", "running", "shutting-down", "terminated"))

    def _watch(self) -> None:
        # bounded by the fixture's life: it sets _stop at the end of the module
        while not self._stop.wait(0.2):
            with contextlib.suppress(Exception):
                self._step()

    def _step(self) -> None:
        found = self.client.describe_instances(
            Filters=[{"Name": "tag-key", "Values": ["buildyard.worker"]}]
        )
        for reservation in found["Reservations"]:
            for instance in reservation["Instances"]:
                iid, state = instance["InstanceId"], instance["State"]["Name"]
                if state == "running" and iid not in self.workers:
                    self._boot(iid)
                elif state in ("shutting-down", "terminated") and iid in self.workers:
                    end_popen(self.workers[iid])

    def _boot(self, iid: str) -> None:
        """What the AMI's boot script would do: run a worker as the user data says."""
        attribute = self.client.describe_instance_attribute(InstanceId=iid, Attribute="userData")
        master, name, password = base64.b64decode(attribute["UserData"]["Value"]).decode().split()
        basedir = self.workdir / iid
        cli = [sys.executable, "-m", "buildyard.worker.cli"]
        subprocess.run(
            [*cli, "create-worker", "--quiet", str(basedir), master, name, password], check=True
        )
        with (self.workdir / f"{iid}.log").open("ab") as out:
            self.workers[iid] = subprocess.Popen(
                [*cli, "start", "--nodaemon", str(basedir)],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def running_workers(self) -> list[str]:
        return [iid for iid, p in self.workers.items() if p.poll() is None]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    workdir = tmp_path_factory.mktemp("ec2")
    port = free_port()
    with (workdir / "moto.log").open("ab") as out:
        moto = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
    endpoint = f"http://127.0.0.1:{port}"
    cloud = Cloud(endpoint, workdir)
    try:

        def up() -> bool:
            with contextlib.suppress(Exception):
                cloud.client.describe_regions()
                return True
            return False

        assert wait_for(up, timeout=60), (workdir / "moto.log").read_text()
        cloud._thread.start()
        yield cloud
    finally:
        cloud._stop.set()
        if cloud._thread.is_alive():
            cloud._thread.join(timeout=30)
        for proc in cloud.workers.values():
            end_popen(proc)
        end_popen(moto)


@pytest.fixture
def aws_env(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """The master reaches moto as boto3 reaches any endpoint: through the environment."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", cloud.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def _head(master: LatentMaster) -> str:
    return HEAD.format(owner=OWNER, password=PASSWORD, port=master.port)


@pytest.mark.usefixtures("aws_env")
def test_ec2_latent_worker_lifecycle(tmp_path: Path, cloud: Cloud) -> None:
    volume = cloud.client.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    master = LatentMaster(tmp_path / "master")
    master.configure(
        _head(master),
        [
            f"ec2('cloud', build_wait_timeout=10, tags={{'team': 'ci'}}, "
            f"volumes=[({volume!r}, '/dev/sdf')])",
            "ec2('nomatch', valid_ami_location_regex=r'nothing-here/(\\d+)')",
            "ec2('spot', spot_instance=True, max_spot_price=0.5, build_wait_timeout=0)",
        ],
        {"hello": ["cloud"], "pick": ["nomatch", "spot"]},
    )
    with ended_at_exit(master.pids):
        master.start()
        assert cloud.all_instances("cloud") == []  # nothing before a build needs it

        # a build starts an instance; its worker connects (the watcher boots it) and builds
        hello = master.force("hello")
        (first,) = master.finished(hello, 1)
        assert first["results"] == 0, master.log()[-4000:]
        assert master.worker_of(first) == "cloud"
        (instance,) = cloud.instances("cloud")
        assert instance["InstanceType"] == "t3.micro"
        assert instance["KeyName"] == "buildyard"
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        assert tags["team"] == "ci" and tags["buildyard.worker"] == "cloud"
        assert "buildyard.master" in tags
        image = cloud.client.describe_images(ImageIds=[instance["ImageId"]])["Images"][0]
        assert image["ImageLocation"].startswith("amazon/getting-started")
        # the key pair and security group were made for it, the volume attached
        assert cloud.client.describe_key_pairs(KeyNames=["buildyard"])["KeyPairs"]
        assert cloud.client.describe_security_groups(GroupNames=["buildyard-workers"])
        (attached,) = cloud.client.describe_volumes(VolumeIds=[volume])["Volumes"]
        assert [a["InstanceId"] for a in attached["Attachments"]] == [instance["InstanceId"]]

        # a second build within build_wait_timeout reuses it
        master.force("hello")
        assert [b["results"] for b in master.finished(hello, 2)] == [0, 0]
        assert [i["InstanceId"] for i in cloud.all_instances("cloud")] == [instance["InstanceId"]]

        # idle past build_wait_timeout: terminated
        assert wait_for(lambda: cloud.instances("cloud") == [], timeout=120), master.log()[-3000:]

        # no AMI matches for 'nomatch': its start fails, it is quarantined, and the request
        # runs on a spot instance instead
        pick = master.force("pick")
        (picked,) = master.finished(pick, 1)
        assert picked["results"] == 0, master.log()[-4000:]
        assert master.worker_of(picked) == "spot"
        failed = [line for line in master.log().splitlines() if "worker=nomatch" in line]
        assert any("no available images match constraints" in line for line in failed), failed
        assert any("latent_worker_quarantined" in line for line in failed), failed
        assert cloud.all_instances("nomatch") == []
        (spot_instance,) = cloud.all_instances("spot")
        assert spot_instance.get("InstanceLifecycle") == "spot", spot_instance
        (priced,) = [line for line in master.log().splitlines() if "ec2_spot_requested" in line]
        # the bid: 1.2 x the average of moto's price history for t3.micro, capped at 0.5
        assert 0 < float(priced.split("price=")[1].split()[0]) <= 0.5, priced
        # build_wait_timeout 0: terminated after the build
        assert wait_for(lambda: cloud.instances("spot") == [], timeout=120)

        master.stop()


@pytest.mark.usefixtures("aws_env")
def test_a_restarted_master_terminates_the_instances_its_killed_run_left(
    tmp_path: Path, cloud: Cloud
) -> None:
    master = LatentMaster(tmp_path / "master")
    master.configure(_head(master), ["ec2('keeper', build_wait_timeout=-1)"], {"keep": ["keeper"]})
    with master.spawned():
        master.spawn()
        keep = master.force("keep")
        (build,) = master.finished(keep, 1)
        assert build["results"] == 0, master.log()[-4000:]
        (instance,) = cloud.instances("keeper")

        master.sigkill()
        assert [i["InstanceId"] for i in cloud.instances("keeper")] == [instance["InstanceId"]]

        master.spawn()
        assert wait_for(lambda: cloud.instances("keeper") == [], timeout=120), master.log()[-3000:]
        assert "ec2_orphan_terminated" in master.log()
        assert master.end() == 0
