"""``worker.EC2LatentWorker``: a latent worker whose instance is an Amazon EC2 instance.

It uses boto3, the optional extra ``buildyard[ec2]``, with each call in a thread
(``asyncio.to_thread``): boto3 is what Buildbot's EC2 worker and most AWS users already have
configured (credentials, regions, ``AWS_ENDPOINT_URL``), and aiobotocore pins exact botocore
versions, which fights with any boto3 installed beside it. Nothing of boto3 is imported until a
configuration builds an ``EC2LatentWorker``; without it that is a configuration error naming the
extra to install.

Instances are tagged ``buildyard.master=<identity of the master>`` and
``buildyard.worker=<name>`` (at creation; a spot instance as soon as its request is fulfilled):
a master that was killed and restarted terminates the instances its earlier run left.
Unlike Buildbot, nothing is asked of AWS while master.cfg loads: the key pair and security group
are looked up (and created when missing) and the AMI chosen at each start.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import os
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from buildyard.common.errors import config_error
from buildyard.master.workers.config import AbstractLatentWorker, LatentWorkerFailedToSubstantiate

log = structlog.get_logger(__name__)

__all__ = ["EC2LatentWorker"]

EXTRA = "pip install 'buildyard[ec2]'"
PENDING = "pending"
RUNNING = "running"
SHUTTINGDOWN = "shutting-down"
TERMINATED = "terminated"
SPOT_REQUEST_PENDING_STATES = ("pending-evaluation", "pending-fulfillment")
FULFILLED = "fulfilled"
PRICE_TOO_LOW = "price-too-low"
LABEL_MASTER = "buildyard.master"
LABEL_WORKER = "buildyard.worker"


def _boto3() -> Any:
    return importlib.import_module("boto3")


class EC2LatentWorker(AbstractLatentWorker):
    """Buildbot's ``EC2LatentWorker(name, password, instance_type, ami=None, ...)``."""

    _secret_arguments = frozenset({"password", "secret_identifier"})
    #: seconds between two looks at a starting or stopping instance (Buildbot's hook point)
    _poll_resolution = 5.0

    def __init__(  # noqa: PLR0915, PLR0917 - Buildbot's arguments
        self,
        name: str,
        password: object,
        instance_type: str,
        ami: str | None = None,
        valid_ami_owners: int | Sequence[int] | None = None,
        valid_ami_location_regex: object = None,
        elastic_ip: str | None = None,
        identifier: str | None = None,
        secret_identifier: str | None = None,
        aws_id_file_path: str | None = None,
        user_data: str | None = None,
        region: str | None = None,
        keypair_name: str | None = None,
        security_name: str | None = None,
        spot_instance: bool = False,
        max_spot_price: float | None = 1.6,
        volumes: Sequence[tuple[str, str]] | None = None,
        placement: str | None = None,
        price_multiplier: float | None = 1.2,
        tags: Mapping[str, str] | None = None,
        product_description: str = "Linux/UNIX",
        subnet_id: str | None = None,
        security_group_ids: Sequence[str] | None = None,
        instance_profile_name: str | None = None,
        block_device_map: Sequence[Mapping[str, Any]] | None = None,
        session: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, password, **kwargs)
        label = f"worker {self.name!r}"
        self.instance: Any = None
        self.spot_request_id: str | None = None
        self.image: Any = None
        try:
            boto3 = _boto3()
        except ImportError:
            config_error(f"{label}: EC2LatentWorker needs boto3, not installed: {EXTRA}")
            return
        if keypair_name is None:
            config_error(f"{label}: EC2LatentWorker: 'keypair_name' parameter must be specified")
        if security_name is None and not subnet_id:
            config_error(f"{label}: EC2LatentWorker: 'security_name' parameter must be specified")
        if security_name and subnet_id:
            config_error(
                f"{label}: security_name (EC2 classic security groups) is not supported in a "
                "VPC; use security_group_ids instead"
            )
        if (ami is not None) == (
            valid_ami_owners is not None or valid_ami_location_regex is not None
        ):
            config_error(
                f"{label}: give either a specific ami, or one or both of "
                "valid_ami_location_regex and valid_ami_owners"
            )
        owners: list[str] | None = None
        if valid_ami_owners is not None:
            given = (valid_ami_owners,) if isinstance(valid_ami_owners, int) else valid_ami_owners
            if not all(isinstance(o, int) and not isinstance(o, bool) for o in given):
                config_error(f"{label}: valid_ami_owners should be an int or a list of ints")
            owners = [str(o) for o in given]
        self.valid_ami_location_regex: re.Pattern[str] | None = None
        if valid_ami_location_regex is not None:
            if not isinstance(valid_ami_location_regex, str):
                config_error(f"{label}: valid_ami_location_regex should be a string")
            else:
                try:
                    self.valid_ami_location_regex = re.compile(valid_ami_location_regex)
                except re.error as exc:
                    config_error(f"{label}: valid_ami_location_regex: {exc}")
        if spot_instance and price_multiplier is None and max_spot_price is None:
            config_error(
                f"{label}: a spot instance needs price_multiplier or max_spot_price (or both)"
            )
        if block_device_map is not None and not isinstance(block_device_map, list):
            config_error(f"{label}: EC2LatentWorker: 'block_device_map' must be a list")
        if identifier is None and secret_identifier is not None:
            config_error(f"{label}: give both or neither of identifier and secret_identifier")
        if identifier is not None and (secret_identifier is None or aws_id_file_path):
            config_error(
                f"{label}: with identifier, give secret_identifier and no aws_id_file_path"
            )
        if identifier is None:
            default = Path(os.environ.get("HOME", "/")) / ".ec2" / "aws_id"
            path = aws_id_file_path or (str(default) if default.exists() else None)
            if path:
                log.warning("ec2_aws_id_file_deprecated", worker=self.name, path=path)
                try:
                    lines = Path(path).read_text(encoding="utf-8").splitlines()
                    identifier, secret_identifier = lines[0].strip(), lines[1].strip()
                except (OSError, IndexError) as exc:
                    config_error(f"{label}: aws_id_file_path {path!r}: {exc}")
        self.ami = ami
        self.valid_ami_owners = owners
        self.instance_type = instance_type
        self.keypair_name = keypair_name
        self.security_name = security_name
        self.user_data = user_data
        self.spot_instance = spot_instance
        self.max_spot_price = max_spot_price
        self.volumes = list(volumes or [])
        self.price_multiplier = price_multiplier
        self.product_description = product_description
        self.placement = f"{region}{placement}" if region and placement else None
        self.elastic_ip_address = elastic_ip
        self.subnet_id = subnet_id
        self.security_group_ids = list(security_group_ids) if security_group_ids else None
        self.classic_security_groups = [security_name] if security_name else None
        self.instance_profile_name = instance_profile_name
        self.tags = dict(tags or {})
        self.block_device_map = None
        if isinstance(block_device_map, list):
            self.block_device_map = [dict(m) for m in block_device_map]
            for mapping in self.block_device_map:
                if isinstance(mapping.get("Ebs"), Mapping):
                    mapping["Ebs"] = {"DeleteOnTermination": True, **mapping["Ebs"]}
        self.session = session
        if session is None:
            credentials = {
                "aws_access_key_id": identifier,
                "aws_secret_access_key": secret_identifier,
            }
            if region is not None:
                regions = boto3.Session(**credentials).get_available_regions("ec2")
                if region not in regions:
                    config_error(f"{label}: the specified region does not exist: {region}")
            else:
                region = boto3.Session().region_name or "us-east-1"
            self.session = boto3.Session(region_name=region, **credentials)
        self.region = region

    # -- AWS, in threads ------------------------------------------------------------------------

    def _ec2(self) -> Any:
        return self.session.resource("ec2")

    @property
    def dns(self) -> str | None:
        return None if self.instance is None else self.instance.public_dns_name

    def _identity_tags(self) -> list[dict[str, str]]:
        assert self.master_info is not None
        tags = {**self.tags, LABEL_MASTER: self.master_info.identity, LABEL_WORKER: self.name}
        return [{"Key": k, "Value": str(v)} for k, v in tags.items()]

    def _prepare(self, ec2: Any) -> None:
        """The key pair and the classic security group, created when missing (Buildbot does
        this while master.cfg loads)."""
        client = ec2.meta.client
        try:
            client.describe_key_pairs(KeyNames=[self.keypair_name])
        except Exception as exc:
            if "InvalidKeyPair.NotFound" not in str(exc):
                raise
            ec2.create_key_pair(KeyName=self.keypair_name)
        if self.security_name:
            try:
                client.describe_security_groups(GroupNames=[self.security_name])
            except Exception as exc:
                if "InvalidGroup.NotFound" not in str(exc):
                    raise
                ec2.create_security_group(
                    GroupName=self.security_name,
                    Description="Authorization to access the buildbot instance.",
                )

    def get_image(self) -> Any:
        """The AMI: ``ami``, or the last of the available images of ``valid_ami_owners`` whose
        location matches ``valid_ami_location_regex``, sorted as Buildbot sorts them (by the
        regex's first group as an integer when every match has one, else as text, else by
        location)."""
        ec2 = self._ec2()
        if self.ami is not None:
            return ec2.Image(self.ami)
        images = ec2.images.all()
        if self.valid_ami_owners:
            images = images.filter(Owners=self.valid_ami_owners)
        regex = self.valid_ami_location_regex
        options: list[tuple[Any, ...]] = []
        if regex is not None:
            level = 0
            raw = []
            for image in images:
                if image.state != "available":
                    continue
                match = regex.match(image.image_location or "")
                if not match:
                    continue
                alpha = integer = None
                if level < 2:
                    try:
                        alpha = match.group(1)
                    except IndexError:
                        level = 2
                    else:
                        if level == 0:
                            try:
                                integer = int(alpha)
                            except (TypeError, ValueError):
                                level = 1
                raw.append((integer, alpha, image.image_location, image.id, image))
            options = [r[level:] for r in raw]
        else:
            options = [(image.image_location, image.id, image) for image in images]
        options.sort(key=lambda o: tuple("" if v is None else v for v in o[:-1]))
        if not options:
            raise LatentWorkerFailedToSubstantiate("no available images match constraints")
        return options[-1][-1]

    def _thd_start(self) -> None:
        ec2 = self._ec2()
        self._prepare(ec2)
        image = self.get_image()
        self.image = image
        if self.spot_instance:
            instance = self._thd_request_spot(ec2, image)
        else:
            options = _without_none(
                ImageId=image.id,
                KeyName=self.keypair_name,
                SecurityGroups=self.classic_security_groups,
                InstanceType=self.instance_type,
                UserData=self.user_data,
                Placement=_without_none(AvailabilityZone=self.placement) or None,
                MinCount=1,
                MaxCount=1,
                SubnetId=self.subnet_id,
                SecurityGroupIds=self.security_group_ids,
                IamInstanceProfile=_without_none(Name=self.instance_profile_name) or None,
                BlockDeviceMappings=self.block_device_map,
                TagSpecifications=[{"ResourceType": "instance", "Tags": self._identity_tags()}],
            )
            (instance,) = ec2.create_instances(**options)
            self.instance = instance
        log.info("ec2_instance_created", worker=self.name, instance=instance.id, ami=image.id)
        self._thd_wait_running(instance)

    def _bid_price(self, ec2: Any) -> float:
        if self.price_multiplier is None:
            assert self.max_spot_price is not None
            return float(self.max_spot_price)
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 86400))
        query = _without_none(
            StartTime=since,
            ProductDescriptions=[self.product_description],
            AvailabilityZone=self.placement,
        )
        history = ec2.meta.client.describe_spot_price_history(**query)["SpotPriceHistory"]
        prices = [float(p["SpotPrice"]) for p in history if p["InstanceType"] == self.instance_type]
        bid = (sum(prices) / len(prices)) * self.price_multiplier if prices else 0.02
        if self.max_spot_price is not None:
            bid = min(bid, float(self.max_spot_price))
        return bid

    def _thd_request_spot(self, ec2: Any, image: Any) -> Any:
        client = ec2.meta.client
        bid = self._bid_price(ec2)
        log.info("ec2_spot_requested", worker=self.name, price=bid)
        # unlike create_instances, the spot request takes the user data base64-encoded
        user_data = None
        if self.user_data is not None:
            user_data = base64.b64encode(self.user_data.encode()).decode()
        reply = client.request_spot_instances(
            SpotPrice=str(bid),
            LaunchSpecification=_without_none(
                ImageId=image.id,
                KeyName=self.keypair_name,
                SecurityGroups=self.classic_security_groups,
                UserData=user_data,
                InstanceType=self.instance_type,
                Placement=_without_none(AvailabilityZone=self.placement) or None,
                SubnetId=self.subnet_id,
                SecurityGroupIds=self.security_group_ids,
                BlockDeviceMappings=self.block_device_map,
                IamInstanceProfile=_without_none(Name=self.instance_profile_name) or None,
            ),
        )
        request_id = reply["SpotInstanceRequests"][0]["SpotInstanceRequestId"]
        self.spot_request_id = request_id
        while True:
            try:
                found = client.describe_spot_instance_requests(SpotInstanceRequestIds=[request_id])
                request = found["SpotInstanceRequests"][0]
                status = request["Status"]["Code"]
                if status not in SPOT_REQUEST_PENDING_STATES:
                    break
            except Exception as exc:
                if "InvalidSpotInstanceRequestID.NotFound" not in str(exc):
                    raise
            time.sleep(self._poll_resolution)
        if status != FULFILLED:
            client.cancel_spot_instance_requests(SpotInstanceRequestIds=[request_id])
            self.spot_request_id = None
            why = "spot price too low" if status == PRICE_TOO_LOW else f"status {status}"
            raise LatentWorkerFailedToSubstantiate(f"spot request {request_id}: {why}")
        instance = ec2.Instance(request["InstanceId"])
        self.instance = instance
        instance.create_tags(Tags=self._identity_tags())
        return instance

    def _thd_wait_running(self, instance: Any) -> None:
        started = time.monotonic()
        instance.reload()
        while instance.state["Name"] == PENDING:
            if self.instance is not instance:  # stopped meanwhile
                return
            time.sleep(self._poll_resolution)
            instance.reload()
        if instance.state["Name"] != RUNNING:
            raise LatentWorkerFailedToSubstantiate(
                f"instance {instance.id} is {instance.state['Name']}, not running"
            )
        if self.elastic_ip_address is not None:
            addresses = instance.meta.client.describe_addresses(
                PublicIps=[self.elastic_ip_address]
            )["Addresses"]
            if not addresses:
                raise LatentWorkerFailedToSubstantiate(
                    f"could not find the elastic IP {self.elastic_ip_address}"
                )
            instance.meta.client.associate_address(
                InstanceId=instance.id, AllocationId=addresses[0]["AllocationId"]
            )
        for volume_id, device in self.volumes:
            self._ec2().Volume(volume_id).attach_to_instance(InstanceId=instance.id, Device=device)
            log.info("ec2_volume_attached", worker=self.name, volume=volume_id, device=device)
        log.info(
            "ec2_instance_running",
            worker=self.name,
            instance=instance.id,
            dns=instance.public_dns_name,
            seconds=round(time.monotonic() - started, 1),
        )

    def _thd_stop(self, instance: Any, spot_request_id: str | None, fast: bool) -> None:
        client = instance.meta.client
        if self.elastic_ip_address is not None:
            try:
                client.disassociate_address(PublicIp=self.elastic_ip_address)
            except Exception as exc:
                log.warning("ec2_elastic_ip_not_released", worker=self.name, error=str(exc))
        if spot_request_id is not None:
            client.cancel_spot_instance_requests(SpotInstanceRequestIds=[spot_request_id])
        instance.reload()
        if instance.state["Name"] not in (SHUTTINGDOWN, TERMINATED):
            instance.terminate()
            log.info("ec2_instance_terminating", worker=self.name, instance=instance.id)
        goal = (SHUTTINGDOWN, TERMINATED) if fast else (TERMINATED,)
        instance.reload()
        while instance.state["Name"] not in goal:
            time.sleep(self._poll_resolution)
            instance.reload()
        log.info("ec2_instance_stopped", worker=self.name, instance=instance.id)

    def _thd_orphans(self) -> int:
        assert self.master_info is not None
        ec2 = self._ec2()
        found = ec2.instances.filter(
            Filters=[
                {"Name": f"tag:{LABEL_MASTER}", "Values": [self.master_info.identity]},
                {"Name": f"tag:{LABEL_WORKER}", "Values": [self.name]},
                {
                    "Name": "instance-state-name",
                    "Values": ["pending", "running", "stopping", "stopped"],
                },
            ]
        )
        count = 0
        for instance in found:
            instance.terminate()
            log.warning("ec2_orphan_terminated", worker=self.name, instance=instance.id)
            count += 1
        return count

    # -- lifecycle ------------------------------------------------------------------------------

    async def start_instance(self, build: Any) -> bool:
        if self.instance is not None:
            raise ValueError("instance active")
        await asyncio.to_thread(self._thd_start)
        return True

    async def stop_instance(self, fast: bool = False) -> None:
        instance, spot = self.instance, self.spot_request_id
        self.instance = self.spot_request_id = None
        if instance is None:
            if spot is not None:
                await asyncio.to_thread(
                    self._ec2().meta.client.cancel_spot_instance_requests,
                    SpotInstanceRequestIds=[spot],
                )
            return
        await asyncio.to_thread(self._thd_stop, instance, spot, fast)

    async def check_instance(self) -> tuple[bool, str]:
        instance = self.instance
        if instance is None:
            return True, ""
        await asyncio.to_thread(instance.reload)
        state = instance.state["Name"]
        if state in (SHUTTINGDOWN, TERMINATED, "stopping", "stopped"):
            return False, f"instance {instance.id} is {state}"
        return True, ""

    async def cleanup_orphans(self) -> int:
        return await asyncio.to_thread(self._thd_orphans)


def _without_none(**options: Any) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}
