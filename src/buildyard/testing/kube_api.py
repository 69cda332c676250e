"""A stand-in for a Kubernetes API server, for tests where no cluster can run.

Shaped like the core v1 pod API that ``KubeLatentWorker`` uses: ``POST
/api/v1/namespaces/{ns}/pods`` (201 with the pod; 409 ``AlreadyExists``; 422 ``Invalid``; 403
``Forbidden`` past the namespace's pod quota), ``GET .../pods`` with ``labelSelector``
(``a=b,c=d``), ``GET .../pods/{name}`` and ``.../status``, ``DELETE .../pods/{name}`` (200 with
the pod, which stays, terminating, until its containers have ended; ``gracePeriodSeconds``), and
errors as ``Status`` objects (``kind``, ``status: Failure``, ``message``, ``reason``, ``code``).
With ``--token``, every call needs ``Authorization: Bearer <token>`` (401 otherwise).

A container is a real process: its ``command`` and ``args``, or the entrypoint of its image as
given with ``--image NAME=JSON-ARGV``, run with the container's ``env``; so the buildyard-worker a
pod's image runs really connects and builds. A container whose image was not given waits with
reason ``ErrImagePull``, as a kubelet reports an image it cannot pull.

Every request is recorded; ``GET /_fake/requests`` (not Kubernetes') returns them, and
``GET /_fake/pods`` every pod with its containers' process ids.

Run: ``python -m buildyard.testing.kube_api --port PORT --state DIR [--image NAME=ARGV]...
[--token T] [--quota N] [--tls-cert F --tls-key F [--client-ca F]]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from buildyard.testing.instances import InstanceProcess, serve_until_stopped


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        },
        status=code,
    )


class Pod:
    def __init__(self, namespace: str, body: dict[str, Any], root: Path) -> None:
        self.namespace = namespace
        self.body = body
        self.name = str(body["metadata"]["name"])
        self.uid = str(uuid.uuid4())
        self.created = _now()
        self.root = root
        self.processes: dict[str, InstanceProcess] = {}
        self.waiting: dict[str, str] = {}
        self.deleting: str | None = None
        self.ending: asyncio.Task[None] | None = None

    def phase(self) -> str:
        if self.waiting or not self.processes:
            return "Pending"
        if any(p.running for p in self.processes.values()):
            return "Running"
        if all(p.returncode == 0 for p in self.processes.values()):
            return "Succeeded"
        return "Failed"

    def to_json(self) -> dict[str, Any]:
        statuses = []
        for c in self.body["spec"]["containers"]:
            cname = c["name"]
            proc = self.processes.get(cname)
            state: dict[str, Any]
            if cname in self.waiting:
                state = {"waiting": {"reason": "ErrImagePull", "message": self.waiting[cname]}}
            elif proc is not None and proc.running:
                state = {"running": {"startedAt": self.created}}
            elif proc is not None:
                state = {"terminated": {"exitCode": proc.returncode, "reason": "Error"}}
            else:
                state = {"waiting": {"reason": "ContainerCreating"}}
            statuses.append({"name": cname, "image": c.get("image"), "state": state})
        metadata = {
            **self.body["metadata"],
            "namespace": self.namespace,
            "uid": self.uid,
            "creationTimestamp": self.created,
        }
        if self.deleting:
            metadata["deletionTimestamp"] = self.deleting
        return {
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": metadata,
            "spec": self.body["spec"],
            "status": {"phase": self.phase(), "containerStatuses": statuses},
        }


class FakeKube:
    def __init__(
        self, state: Path, images: dict[str, list[str]], token: str | None, quota: int | None
    ) -> None:
        self.state = state
        self.images = images
        self.token = token
        self.quota = quota
        self.pods: dict[tuple[str, str], Pod] = {}
        self.requests: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        base = "/api/v1/namespaces/{ns}/pods"
        app.router.add_get(base, self.list_pods)
        app.router.add_post(base, self.create_pod)
        app.router.add_get(base + "/{name}", self.get_pod)
        app.router.add_get(base + "/{name}/status", self.get_pod)
        app.router.add_delete(base + "/{name}", self.delete_pod)
        app.router.add_get("/_fake/requests", self.list_requests)
        app.router.add_get("/_fake/pods", self.fake_pods)
        app.on_shutdown.append(self._kill_all)
        return app

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith("/_fake/"):
            return await handler(request)
        record: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "authorization": request.headers.get("Authorization"),
        }
        if request.can_read_body:
            with contextlib.suppress(ValueError):
                record["body"] = await request.json()
        self.requests.append(record)
        if (
            self.token is not None
            and request.headers.get("Authorization") != f"Bearer {self.token}"
        ):
            return _status(401, "Unauthorized", "Unauthorized")
        return await handler(request)

    async def list_requests(self, _request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    async def fake_pods(self, _request: web.Request) -> web.Response:
        return web.json_response(
            [
                {
                    "namespace": p.namespace,
                    "name": p.name,
                    "phase": p.phase(),
                    "pids": {
                        n: proc.proc.pid
                        for n, proc in p.processes.items()
                        if proc.proc is not None and proc.running
                    },
                }
                for p in self.pods.values()
            ]
        )

    async def list_pods(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        wanted = [
            s.partition("=") for s in request.query.get("labelSelector", "").split(",") if s.strip()
        ]
        items = []
        for pod in self.pods.values():
            if pod.namespace != ns:
                continue
            labels = pod.body["metadata"].get("labels") or {}
            if all((labels.get(k) == v) if sep else (k in labels) for k, sep, v in wanted):
                items.append(pod.to_json())
        return web.json_response(
            {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
        )

    async def create_pod(self, request: web.Request) -> web.Response:
        ns = request.match_info["ns"]
        try:
            body = await request.json()
        except ValueError:
            return _status(400, "BadRequest", "the body is not JSON")
        name = (body.get("metadata") or {}).get("name")
        containers = (body.get("spec") or {}).get("containers") or []
        if not name:
            return _status(422, "Invalid", "Pod is invalid: metadata.name: Required value")
        if not containers or any(not c.get("name") or not c.get("image") for c in containers):
            return _status(
                422, "Invalid", f'Pod "{name}" is invalid: spec.containers: Required value'
            )
        if (ns, name) in self.pods:
            return _status(409, "AlreadyExists", f'pods "{name}" already exists')
        in_ns = sum(1 for p in self.pods.values() if p.namespace == ns)
        if self.quota is not None and in_ns >= self.quota:
            return _status(
                403,
                "Forbidden",
                f'pods "{name}" is forbidden: exceeded quota: pods, requested: pods=1, '
                f"used: pods={in_ns}, limited: pods={self.quota}",
            )
        pod = Pod(ns, body, self.state / ns / f"{name}-{uuid.uuid4().hex[:6]}")
        self.pods[(ns, name)] = pod
        for c in containers:
            argv = list(c.get("command") or []) + list(c.get("args") or [])
            if not c.get("command"):
                entry = self.images.get(str(c["image"]))
                if entry is None:
                    pod.waiting[c["name"]] = f'pull access denied for "{c["image"]}"'
                    continue
                argv = entry + argv
            env = {str(e["name"]): str(e.get("value", "")) for e in c.get("env") or []}
            proc = InstanceProcess(pod.root / c["name"])
            pod.processes[c["name"]] = proc
            await proc.start(argv, env)
        return web.json_response(pod.to_json(), status=201)

    def _pod(self, request: web.Request) -> Pod | None:
        return self.pods.get((request.match_info["ns"], request.match_info["name"]))

    async def get_pod(self, request: web.Request) -> web.Response:
        pod = self._pod(request)
        if pod is None:
            return _status(404, "NotFound", f'pods "{request.match_info["name"]}" not found')
        return web.json_response(pod.to_json())

    async def delete_pod(self, request: web.Request) -> web.Response:
        pod = self._pod(request)
        if pod is None:
            return _status(404, "NotFound", f'pods "{request.match_info["name"]}" not found')
        grace = float(request.query.get("gracePeriodSeconds", "30"))
        if pod.deleting is None:
            pod.deleting = _now()
            pod.ending = asyncio.ensure_future(self._end(pod, grace))
        return web.json_response(pod.to_json())

    async def _end(self, pod: Pod, grace: float) -> None:
        # a grace of 0 still gives the container a moment, as the kubelet's minimum does
        await asyncio.gather(*(p.end(max(grace, 1.0)) for p in pod.processes.values()))
        self.pods.pop((pod.namespace, pod.name), None)

    async def _kill_all(self, _app: web.Application) -> None:
        for pod in list(self.pods.values()):
            for proc in pod.processes.values():
                await proc.end(5.0)


async def _serve(args: argparse.Namespace) -> None:
    images = {}
    for item in args.image:
        name, _, argv = item.partition("=")
        images[name] = json.loads(argv)
    kube = FakeKube(Path(args.state), images, args.token, args.quota)
    context = None
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            context.load_verify_locations(args.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
    runner = web.AppRunner(kube.app(), access_log=None)
    await runner.setup()
    await serve_until_stopped(
        runner, web.TCPSite(runner, "127.0.0.1", args.port, ssl_context=context)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--image", action="append", default=[])
    parser.add_argument("--token")
    parser.add_argument("--quota", type=int)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--client-ca")
    args = parser.parse_args()
    Path(args.state).mkdir(parents=True, exist_ok=True)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
