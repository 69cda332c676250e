"""A stand-in for the Docker Engine HTTP API, for tests where no engine can run containers.

Shaped like the Engine API that ``DockerLatentWorker`` uses (the paths, methods, query
parameters, JSON bodies and status codes of ``/containers/create``, ``/containers/{id}/start``,
``/stop``, ``/wait``, ``/json``, ``/logs``, ``DELETE /containers/{id}``, ``/containers/json`` with
``filters``, ``/images/json``, ``/images/{name}/json``, ``/images/create`` and ``/build``), under
a ``/v1.NN`` prefix or not, as buildyard and the Docker SDK for Python (stock Buildbot's client)
call them. A "container" is a real process: its ``Cmd`` run with the engine's
environment plus the container's ``Env``, in a directory of its own, so the buildyard-worker a
container's command starts really connects and builds. Images carry no files: an image exists
when it was given on the command line (``--image``), pulled from the names given with
``--registry``, or built from a Dockerfile whose ``FROM`` image exists.

Every request is recorded; ``GET /_fake/requests`` (not Docker's) returns them.

Run: ``python -m buildyard.testing.docker_engine --socket PATH --state DIR [--image NAME]...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import io
import json
import os
import re
import secrets
import signal
import tarfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from buildyard.testing.instances import serve_until_stopped

_VERSION_PREFIX = re.compile(r"^/v\d+\.\d+(?=/)")


class Container:
    def __init__(self, cid: str, name: str, body: dict[str, Any], root: Path) -> None:
        self.id = cid
        self.name = name
        self.body = body
        self.root = root
        self.proc: asyncio.subprocess.Process | None = None
        self.exit_code: int | None = None
        self.started = False
        self.log = root / "container.log"

    @property
    def status(self) -> str:
        if self.proc is not None and self.proc.returncode is None:
            return "running"
        return "exited" if self.started else "created"


class FakeEngine:
    def __init__(self, state: Path, images: list[str], registry: list[str]) -> None:
        self.state = state
        self.images: set[str] = {_tagged(i) for i in images}
        self.registry: set[str] = {_tagged(i) for i in registry}
        self.containers: dict[str, Container] = {}
        self.requests: list[dict[str, Any]] = []

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._strip_version], client_max_size=64 * 1024**2)
        routes = [
            ("GET", "/_ping", self.ping),
            ("GET", "/version", self.version),
            ("GET", "/images/json", self.image_list),
            ("GET", "/images/{name:.+}/json", self.image_inspect),
            ("POST", "/images/create", self.image_create),
            ("POST", "/build", self.build),
            ("GET", "/containers/json", self.container_list),
            ("POST", "/containers/create", self.container_create),
            ("POST", "/containers/{id}/start", self.container_start),
            ("POST", "/containers/{id}/stop", self.container_stop),
            ("POST", "/containers/{id}/wait", self.container_wait),
            ("GET", "/containers/{id}/json", self.container_inspect),
            ("GET", "/containers/{id}/logs", self.container_logs),
            ("DELETE", "/containers/{id}", self.container_delete),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, r"/{version:v\d+\.\d+}" + path, handler)
        app.router.add_get("/_fake/requests", self.list_requests)
        app.on_shutdown.append(self._kill_all)
        return app

    @web.middleware
    async def _strip_version(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        path = _VERSION_PREFIX.sub("", request.path)
        if not path.startswith("/_fake/"):
            record: dict[str, Any] = {
                "method": request.method,
                "path": path,
                "query": dict(request.query),
                "time": time.time(),  # when it came, for bench/latent.py
            }
            if request.content_type == "application/json" and request.can_read_body:
                record["body"] = await request.json()  # the handler reads it again
            self.requests.append(record)
        return await handler(request)

    async def ping(self, _request: web.Request) -> web.Response:
        return web.Response(text="OK")

    async def version(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"Version": "0-fake", "ApiVersion": "1.45", "MinAPIVersion": "1.24", "Os": "linux"}
        )

    async def list_requests(self, _request: web.Request) -> web.Response:
        return web.json_response(self.requests)

    # -- images ---------------------------------------------------------------------------------

    async def image_list(self, _request: web.Request) -> web.Response:
        return web.json_response(
            [
                {"Id": "sha256:" + name.encode().hex()[:64], "RepoTags": [name]}
                for name in sorted(self.images)
            ]
        )

    async def image_inspect(self, request: web.Request) -> web.Response:
        name = _tagged(request.match_info["name"])
        if name not in self.images:
            return _error(404, f"No such image: {name}")
        return web.json_response({"Id": "sha256:" + name.encode().hex()[:64], "RepoTags": [name]})

    async def image_create(self, request: web.Request) -> web.Response:
        name = _tagged(f"{request.query['fromImage']}:{request.query.get('tag') or 'latest'}")
        if name not in self.registry:
            return _error(404, f"pull access denied for {name}, repository does not exist")
        self.images.add(name)
        lines = [{"status": f"Pulling from {name}"}, {"status": f"Downloaded newer image {name}"}]
        return web.Response(text="".join(json.dumps(x) + "\n" for x in lines))

    async def build(self, request: web.Request) -> web.Response:
        data = await request.read()
        if request.headers.get("Content-Encoding") == "gzip" or data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            member = tar.extractfile("Dockerfile")
            if member is None:
                return _error(400, "Cannot locate specified Dockerfile: Dockerfile")
            dockerfile = member.read().decode()
        match = re.search(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE | re.IGNORECASE)
        if match is None:
            return _error(400, "the Dockerfile has no FROM")
        base = _tagged(match.group(1))
        lines: list[dict[str, str]] = [{"stream": f"Step 1/1 : FROM {base}\n"}]
        if base not in self.images:
            lines.append({"error": f"pull access denied for {base}"})
        else:
            self.images.add(_tagged(request.query["t"]))
            lines.append({"stream": f"Successfully tagged {request.query['t']}\n"})
        return web.Response(text="".join(json.dumps(x) + "\n" for x in lines))

    # -- containers -----------------------------------------------------------------------------

    def _get(self, request: web.Request) -> Container | None:
        key = request.match_info["id"]
        for c in self.containers.values():
            if c.id == key or c.id.startswith(key) or c.name == key:
                return c
        return None

    async def container_list(self, request: web.Request) -> web.Response:
        filters = json.loads(request.query.get("filters") or "{}")
        everything = request.query.get("all") in ("1", "true", "True")
        out = []
        for c in self.containers.values():
            if not everything and c.status != "running":
                continue
            if any(n not in c.name for n in filters.get("name", [])):
                continue
            labels = c.body.get("Labels") or {}
            wanted = filters.get("label", [])
            if any(
                (labels.get(k) != v) if sep else (k not in labels)
                for k, sep, v in (f.partition("=") for f in wanted)
            ):
                continue
            out.append(
                {
                    "Id": c.id,
                    "Names": [f"/{c.name}"],
                    "Image": c.body.get("Image"),
                    "Labels": labels,
                    "State": c.status,
                    "Status": c.status,
                }
            )
        return web.json_response(out)

    async def container_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = request.query.get("name") or f"fake-{secrets.token_hex(4)}"
        if any(c.name == name for c in self.containers.values()):
            return _error(409, f'Conflict. The container name "/{name}" is already in use')
        image = _tagged(str(body.get("Image")))
        if image not in self.images:
            return _error(404, f"No such image: {image}")
        if not body.get("Cmd"):
            return _error(400, "No command specified")
        cid = secrets.token_hex(32)
        root = self.state / cid[:12]
        root.mkdir(parents=True)
        self.containers[cid] = Container(cid, name, body, root)
        return web.json_response({"Id": cid, "Warnings": []}, status=201)

    async def container_start(self, request: web.Request) -> web.Response:
        c = self._get(request)
        if c is None:
            return _error(404, "No such container")
        if c.status == "running":
            return web.Response(status=304)
        env = dict(os.environ)
        env.update(e.split("=", 1) for e in c.body.get("Env") or [] if "=" in e)
        out = c.log.open("ab")
        try:
            c.proc = await asyncio.create_subprocess_exec(
                *c.body["Cmd"],
                cwd=c.root,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        except OSError as exc:
            return _error(400, f"failed to create task for container: {exc}")
        finally:
            out.close()
        c.started = True
        return web.Response(status=204)

    async def _end(self, c: Container, grace: float) -> None:
        proc = c.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            async with asyncio.timeout(grace):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        c.exit_code = proc.returncode

    async def container_stop(self, request: web.Request) -> web.Response:
        c = self._get(request)
        if c is None:
            return _error(404, "No such container")
        if c.status != "running":
            return web.Response(status=304)
        await self._end(c, float(request.query.get("t", "10")))
        return web.Response(status=204)

    async def container_wait(self, request: web.Request) -> web.Response:
        c = self._get(request)
        if c is None:
            return _error(404, "No such container")
        if c.proc is not None:
            await c.proc.wait()
        code = c.proc.returncode if c.proc is not None else 0
        return web.json_response({"StatusCode": code, "Error": None})

    async def container_inspect(self, request: web.Request) -> web.Response:
        c = self._get(request)
        if c is None:
            return _error(404, "No such container")
        pid = c.proc.pid if c.proc is not None and c.proc.returncode is None else 0
        return web.json_response(
            {
                "Id": c.id,
                "Name": f"/{c.name}",
                "Image": c.body.get("Image"),
                "State": {
                    "Status": c.status,
                    "Running": c.status == "running",
                    "Pid": pid,
                    "ExitCode": c.proc.returncode if c.proc and c.proc.returncode else 0,
                },
                "Config": {
                    "Image": c.body.get("Image"),
                    "Cmd": c.body.get("Cmd"),
                    "Env": c.body.get("Env"),
                    "Labels": c.body.get("Labels") or {},
                    "Hostname": c.body.get("Hostname"),
                },
                "HostConfig": c.body.get("HostConfig") or {},
            }
        )

    async def container_logs(self, request: web.Request) -> web.Response:
        c = self._get(request)
        if c is None:
            return _error(404, "No such container")
        text = c.log.read_bytes() if c.log.exists() else b""
        tail = request.query.get("tail")
        if tail and tail != "all":
            text = b"\n".join(text.splitlines()[-int(tail) :])
        # stdout frames: stream type 1, three zero bytes, the big-endian length
        framed = b"\x01\0\0\0" + len(text).to_bytes(4, "big") + text if text else b""
        return web.Response(body=framed, content_type="application/vnd.docker.raw-stream")

    async def container_delete(self, request: web.Request) -> web.Response:
        c = self._get(request)
        if c is None:
            return _error(404, "No such container")
        force = request.query.get("force") in ("1", "true", "True")
        if c.status == "running" and not force:
            return _error(409, "You cannot remove a running container. Stop it first.")
        await self._end(c, 0.0)
        del self.containers[c.id]
        return web.Response(status=204)

    async def _kill_all(self, _app: web.Application) -> None:
        for c in list(self.containers.values()):
            await self._end(c, 5.0)


def _tagged(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


async def _serve(args: argparse.Namespace) -> None:
    engine = FakeEngine(Path(args.state), args.image, args.registry)
    runner = web.AppRunner(engine.app(), access_log=None)
    await runner.setup()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(args.socket)
    await serve_until_stopped(runner, web.UnixSite(runner, args.socket))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--image", action="append", default=[])
    parser.add_argument("--registry", action="append", default=[])
    args = parser.parse_args()
    Path(args.state).mkdir(parents=True, exist_ok=True)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
