"""Report generators: which events make a report, and what goes into it.

A generator names the mq events it wants (``wanted_event_keys``) and turns one of them into a
report dict, or None when its filters say no. The report is Buildbot's shape: ``body``,
``subject``, ``type``, ``results``, ``builds``, ``buildset``, ``users``, ``patches``, ``logs``,
``extra_info`` (and ``worker`` for a missing worker).

Filters: ``builders`` or ``tags`` (not both), ``schedulers``, ``branches`` (lists of names), and
for finished builds ``mode``: ``"all"``, or any of ``failing``, ``passing``, ``problem`` (a
failure after a non-failure), ``warnings`` (alone: failing and warnings), ``exception``,
``cancelled``, ``change`` (the result differs from the previous build's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from buildyard.common.config_object import ConfigObject
from buildyard.common.errors import config_error, config_warning
from buildyard.master.model.results import Results
from buildyard.master.mq.base import Key, Pattern
from buildyard.master.reporters import details
from buildyard.master.reporters.message import (
    Item,
    MessageFormatter,
    MessageFormatterBase,
    MessageFormatterMissingWorker,
    MessageFormatterRenderable,
)
from buildyard.master.reporters.service import ReporterEnvironment

Report = dict[str, Any]

POSSIBLE_MODES = ("change", "failing", "passing", "problem", "warnings", "exception", "cancelled")


class ReportSource(Protocol):
    """What a generator asks of its reporter."""

    async def responsible_users(self, env: ReporterEnvironment, buildid: int) -> list[str]: ...


def expand_mode(mode: object) -> tuple[str, ...]:
    if isinstance(mode, str):
        if mode == "all":
            return ("failing", "passing", "warnings", "exception", "cancelled")
        if mode == "warnings":
            return ("failing", "warnings")
        return (mode,)
    if isinstance(mode, list | tuple | set | frozenset):
        return tuple(str(m) for m in mode)
    return ()


class _Generator(ConfigObject):
    wanted_event_keys: list[Pattern] = []

    def check(self) -> None:
        """Configuration checks beyond the constructor's (Buildbot's ``check()``)."""

    def generate_name(self) -> str:
        return type(self).__name__

    async def generate(
        self, env: ReporterEnvironment, reporter: ReportSource, key: Key, msg: Item
    ) -> Report | None:
        raise NotImplementedError


class _BuildGenerator(_Generator):
    """The filters and message building the build and buildset generators share."""

    def _setup(
        self,
        *,
        mode: object,
        tags: object,
        builders: object,
        schedulers: object,
        branches: object,
        subject: str | None,
        add_logs: object,
        add_patch: bool,
    ) -> None:
        owner = type(self).__name__
        if isinstance(mode, list | tuple | set | frozenset) and "all" in mode:
            config_error(f"{owner}: mode 'all' must be given alone, as the string 'all'")
        self.mode = expand_mode(mode)
        if not self.mode and mode not in ((), []):
            config_error(f"{owner}: mode must be a string or a list of strings, not {mode!r}")
        for m in self.mode:
            if m not in POSSIBLE_MODES and m != "all":
                config_error(
                    f"{owner}: mode {m!r} is not a valid mode (one of 'all', "
                    f"{', '.join(repr(p) for p in POSSIBLE_MODES)})"
                )
        for what, value in (
            ("tags", tags),
            ("builders", builders),
            ("schedulers", schedulers),
            ("branches", branches),
        ):
            if value is not None and not isinstance(value, list):
                config_error(f"{owner}: {what} must be a list or None, not {value!r}")
        if builders is not None and tags is not None:
            config_error(f"{owner}: give builders or tags to filter on, not both")
        if subject is not None and "\n" in subject:
            config_error(f"{owner}: the subject must be one line")
        if add_logs is not None:
            config_warning(
                f"{owner}: add_logs is deprecated (as in Buildbot 4.1); use the message "
                "formatter's want_logs_content"
            )
        self.tags = tags if isinstance(tags, list) else None
        self.builders = builders if isinstance(builders, list) else None
        self.schedulers = schedulers if isinstance(schedulers, list) else None
        self.branches = branches if isinstance(branches, list) else None
        self.subject = subject
        self.add_logs = add_logs
        self.add_patch = add_patch

    def generate_name(self) -> str:
        name = type(self).__name__
        for what in ("tags", "builders", "schedulers", "branches"):
            value = getattr(self, what)
            if value is not None:
                name += f"_{what}_" + "+".join(value)
        return name + "_".join(self.mode)

    def is_message_needed_by_props(self, build: Item) -> bool:
        builder = build["builder"]
        props = build.get("properties") or {}
        scheduler = props.get("scheduler", [None])[0]
        branch = props.get("branch", [None])[0]
        if self.builders is not None and builder["name"] not in self.builders:
            return False
        if self.schedulers is not None and scheduler not in self.schedulers:
            return False
        if self.branches is not None and branch not in self.branches:
            return False
        return not (
            self.tags is not None and not any(t in (builder.get("tags") or []) for t in self.tags)
        )

    def is_message_needed_by_results(self, build: Item) -> bool:
        results = build["results"]
        prev = build.get("prev_build")
        mode = self.mode
        if "change" in mode and prev and prev["results"] != results:
            return True
        if "problem" in mode and results == Results.FAILURE and prev:
            return prev["results"] != Results.FAILURE or self._plain_match(mode, results)
        return self._plain_match(mode, results)

    @staticmethod
    def _plain_match(mode: Sequence[str], results: object) -> bool:
        wanted = {
            "failing": Results.FAILURE,
            "passing": Results.SUCCESS,
            "warnings": Results.WARNINGS,
            "exception": Results.EXCEPTION,
            "cancelled": Results.CANCELLED,
        }
        return any(m in wanted and results == wanted[m] for m in mode)

    def _want_previous_build(self) -> bool:
        return "change" in self.mode or "problem" in self.mode

    def _wants(self, formatter: MessageFormatterBase) -> dict[str, Any]:
        return {
            "want_properties": formatter.want_properties,
            "want_steps": formatter.want_steps,
            "want_logs": formatter.want_logs,
            "want_logs_content": formatter.want_logs_content,
            "add_logs": self.add_logs,
        }

    def _patches(self, build: Item) -> list[Any]:
        if not self.add_patch:
            return []
        stamps = (build.get("buildset") or {}).get("sourcestamps") or []
        return [ss["patch"] for ss in stamps if ss.get("patch") is not None]

    @staticmethod
    def _logs(build: Item) -> list[Item]:
        return [
            lg
            for step in build.get("steps") or []
            for lg in step.get("logs") or []
            if "content" in lg
        ]

    def _default_subject(self, env: ReporterEnvironment, results: object, builder: str) -> str:
        assert self.subject is not None
        try:
            name = Results(results).text  # type: ignore[arg-type]
        except ValueError:
            name = str(results)
        return self.subject % {
            "result": name,
            "projectName": env.title,
            "title": env.title,
            "builder": builder,
        }

    async def build_message(
        self,
        formatter: MessageFormatterBase,
        env: ReporterEnvironment,
        reporter: ReportSource,
        build: Item,
    ) -> Report:
        users = await reporter.responsible_users(env, build["buildid"])
        msg = await formatter.format_message_for_build(
            env, build, is_buildset=False, mode=self.mode, users=users
        )
        subject = msg["subject"]
        if subject is None and self.subject is not None:
            subject = self._default_subject(env, build["results"], build["builder"]["name"])
        return {
            "body": msg["body"],
            "subject": subject,
            "type": msg["type"],
            "results": build["results"],
            "builds": [build],
            "buildset": build["buildset"],
            "users": list(users),
            "patches": self._patches(build),
            "logs": self._logs(build),
            "extra_info": msg.get("extra_info"),
        }


_SUBJECT = "Buildbot %(result)s in %(title)s on %(builder)s"


class BuildStatusGenerator(_BuildGenerator):
    """A report when a build finishes (and, with ``report_new``, when it starts) and its
    result matches ``mode``."""

    def __init__(
        self,
        mode: object = ("failing", "passing", "warnings"),
        tags: list[str] | None = None,
        builders: list[str] | None = None,
        schedulers: list[str] | None = None,
        branches: list[str] | None = None,
        add_logs: object = None,
        add_patch: bool = False,
        report_new: bool = False,
        message_formatter: MessageFormatterBase | None = None,
    ) -> None:
        self._setup(
            mode=mode,
            tags=tags,
            builders=builders,
            schedulers=schedulers,
            branches=branches,
            subject=_SUBJECT,
            add_logs=add_logs,
            add_patch=add_patch,
        )
        self.formatter = message_formatter or MessageFormatter()
        self.wanted_event_keys = [("builds", None, "finished")]
        if report_new:
            self.wanted_event_keys.append(("builds", None, "new"))

    async def generate(
        self, env: ReporterEnvironment, reporter: ReportSource, key: Key, msg: Item
    ) -> Report | None:
        build = dict(msg)
        is_new = key[-1] == "new"
        await details.details_for_build(
            env,
            build,
            want_previous_build=not is_new and self._want_previous_build(),
            **self._wants(self.formatter),
        )
        if not self.is_message_needed_by_props(build):
            return None
        if not is_new and not self.is_message_needed_by_results(build):
            return None
        return await self.build_message(self.formatter, env, reporter, build)


class BuildStartEndStatusGenerator(_BuildGenerator):
    """A report when a build starts (``start_formatter``) and when it ends
    (``end_formatter``), whatever its result."""

    def __init__(
        self,
        tags: list[str] | None = None,
        builders: list[str] | None = None,
        schedulers: list[str] | None = None,
        branches: list[str] | None = None,
        add_logs: object = None,
        add_patch: bool = False,
        start_formatter: MessageFormatterBase | None = None,
        end_formatter: MessageFormatterBase | None = None,
    ) -> None:
        self._setup(
            mode="all",
            tags=tags,
            builders=builders,
            schedulers=schedulers,
            branches=branches,
            subject=None,
            add_logs=add_logs,
            add_patch=add_patch,
        )
        self.start_formatter = start_formatter or MessageFormatterRenderable("Build started.")
        self.end_formatter = end_formatter or MessageFormatterRenderable("Build done.")
        self.wanted_event_keys = [("builds", None, "new"), ("builds", None, "finished")]

    async def generate(
        self, env: ReporterEnvironment, reporter: ReportSource, key: Key, msg: Item
    ) -> Report | None:
        build = dict(msg)
        formatter = self.start_formatter if key[-1] == "new" else self.end_formatter
        await details.details_for_build(env, build, **self._wants(formatter))
        if not self.is_message_needed_by_props(build):
            return None
        return await self.build_message(formatter, env, reporter, build)


class BuildRequestGenerator(_BuildGenerator):
    """A report when a build request is submitted (the build is pending) or cancelled; the
    build dict is what is known before the build starts (``results`` None, ``complete``
    False, ``url`` the request's)."""

    def __init__(
        self,
        tags: list[str] | None = None,
        builders: list[str] | None = None,
        schedulers: list[str] | None = None,
        branches: list[str] | None = None,
        add_patch: bool = False,
        formatter: MessageFormatterBase | None = None,
    ) -> None:
        self._setup(
            mode="all",
            tags=tags,
            builders=builders,
            schedulers=schedulers,
            branches=branches,
            subject=None,
            add_logs=None,
            add_patch=add_patch,
        )
        self.formatter = formatter or MessageFormatterRenderable("Build pending.")
        self.wanted_event_keys = [("buildrequests", None, "new"), ("buildrequests", None, "cancel")]

    async def _partial_build(self, env: ReporterEnvironment, request: Item) -> Item:
        bsid, builderid = request["buildsetid"], request["builderid"]
        buildset = await details.get_item(env.data, ("buildsets", bsid)) or {"sourcestamps": []}
        builder = await details.get_item(env.data, ("builders", builderid)) or {
            "builderid": builderid,
            "name": str(builderid),
            "tags": [],
        }
        props: dict[str, list[Any]] = dict(
            await details.get_item(env.data, ("buildsets", bsid, "properties")) or {}
        )
        props["buildername"] = [builder["name"], "Builder"]
        stamps = buildset.get("sourcestamps") or []
        if len(stamps) == 1:
            for name in ("branch", "revision", "repository", "codebase", "project"):
                props.setdefault(name, [stamps[0].get(name), "Build"])
        return {
            "buildrequest": request,
            "buildset": buildset,
            "builderid": builderid,
            "builder": builder,
            "url": details.url_for_buildrequest(env, request["buildrequestid"]),
            "results": None,
            "complete": False,
            "properties": props,
        }

    async def generate(
        self, env: ReporterEnvironment, reporter: ReportSource, key: Key, msg: Item
    ) -> Report | None:
        build = await self._partial_build(env, dict(msg))
        if key[-1] == "cancel":
            build["complete"], build["results"] = True, Results.CANCELLED
        if not self.is_message_needed_by_props(build):
            return None
        message = await self.formatter.format_message_for_build(
            env, build, is_buildset=True, mode=self.mode, users=[]
        )
        return {
            "body": message["body"],
            "subject": message["subject"],
            "type": message["type"],
            "results": build["results"],
            "builds": [build],
            "buildset": build["buildset"],
            "users": [],
            "patches": self._patches(build),
            "logs": [],
            "extra_info": message.get("extra_info"),
        }


def _merge_body(body: Any, new: Any) -> tuple[Any, bool]:
    if body is None:
        return new, True
    if new is None:
        return body, True
    if isinstance(body, str) and isinstance(new, str):
        return body + new, True
    if isinstance(body, list) and isinstance(new, list):
        return body + new, True
    return body, False


class BuildSetStatusGenerator(_BuildGenerator):
    """One report when a buildset completes, with the messages of its builds that pass the
    filters joined (bodies of the same type concatenated)."""

    def __init__(
        self,
        mode: object = ("failing", "passing", "warnings"),
        tags: list[str] | None = None,
        builders: list[str] | None = None,
        schedulers: list[str] | None = None,
        branches: list[str] | None = None,
        subject: str | None = None,
        add_logs: object = None,
        add_patch: bool = False,
        message_formatter: MessageFormatterBase | None = None,
    ) -> None:
        if subject is not None:
            # Buildbot 4.3 ignores it too: its subject comes from the formatter
            config_warning(
                "BuildSetStatusGenerator: subject is not used (as in Buildbot 4.3); give the "
                "message formatter a subject"
            )
        self._setup(
            mode=mode,
            tags=tags,
            builders=builders,
            schedulers=schedulers,
            branches=branches,
            subject=_SUBJECT,
            add_logs=add_logs,
            add_patch=add_patch,
        )
        self.formatter = message_formatter or MessageFormatter()
        self.wanted_event_keys = [("buildsets", None, "complete")]

    async def generate(
        self, env: ReporterEnvironment, reporter: ReportSource, key: Key, msg: Item
    ) -> Report | None:
        found = await details.details_for_buildset(
            env,
            int(msg["bsid"]),
            want_previous_build=self._want_previous_build(),
            **self._wants(self.formatter),
        )
        buildset = found["buildset"]
        builds = [
            b
            for b in found["builds"]
            if self.is_message_needed_by_props(b) and self.is_message_needed_by_results(b)
        ]
        if not builds:
            return None
        body: Any = None
        subject = msgtype = None
        extra: dict[str, dict[str, Any]] | None = None
        users: set[str] = set()
        patches: list[Any] = []
        logs: list[Item] = []
        for build in builds:
            patches += self._patches(build)
            logs += self._logs(build)
            blamelist = await reporter.responsible_users(env, build["buildid"])
            users.update(blamelist)
            message = await self.formatter.format_message_for_build(
                env, build, is_buildset=True, mode=self.mode, users=blamelist
            )
            if message["type"] is not None:
                if msgtype is None:
                    msgtype = message["type"]
                elif msgtype != message["type"]:
                    continue
            subject = subject if subject is not None else message["subject"]
            body, ok = _merge_body(body, message["body"])
            if ok and message.get("extra_info"):
                extra = extra or {}
                for k, v in message["extra_info"].items():
                    extra.setdefault(k, {}).update(
                        {vk: vv for vk, vv in v.items() if vk not in extra.get(k, {})}
                    )
        if subject is None:
            subject = self._default_subject(env, buildset.get("results"), "whole buildset")
        return {
            "body": body,
            "subject": subject,
            "type": msgtype,
            "results": buildset.get("results"),
            "builds": builds,
            "buildset": buildset,
            "users": sorted(users),
            "patches": patches,
            "logs": logs,
            "extra_info": extra,
        }


class BuildSetCombinedStatusGenerator(_Generator):
    """One report when a buildset completes, formatted from the whole buildset at once
    (``format_message_for_buildset``)."""

    def __init__(self, message_formatter: Any) -> None:
        if not isinstance(message_formatter, MessageFormatterBase):
            config_error(
                "BuildSetCombinedStatusGenerator: message_formatter must be a message "
                f"formatter, not {message_formatter!r}"
            )
        self.formatter = message_formatter
        self.wanted_event_keys = [("buildsets", None, "complete")]

    async def generate(
        self, env: ReporterEnvironment, reporter: ReportSource, key: Key, msg: Item
    ) -> Report | None:
        f = self.formatter
        found = await details.details_for_buildset(
            env,
            int(msg["bsid"]),
            want_properties=f.want_properties,
            want_steps=f.want_steps,
            want_logs=f.want_logs,
            want_logs_content=f.want_logs_content,
        )
        buildset, builds = found["buildset"], found["builds"]
        message = await f.format_message_for_buildset(
            env, buildset, builds, is_buildset=True, mode=("passing",), users=[]
        )
        return {
            "body": message["body"],
            "subject": message["subject"],
            "type": message["type"],
            "extra_info": message.get("extra_info"),
            "results": buildset.get("results"),
            "builds": builds,
            "buildset": buildset,
            "users": [],
            "patches": [],
            "logs": [],
        }


class WorkerMissingGenerator(_Generator):
    """A report when a worker with ``notify`` addresses has been gone longer than its
    ``missing_timeout``; ``workers``: ``"all"`` or a list of worker names."""

    def __init__(
        self,
        workers: str | Sequence[str] = "all",
        message_formatter: MessageFormatterMissingWorker | None = None,
    ) -> None:
        if not (workers == "all" or isinstance(workers, list | tuple | set)):
            config_error("WorkerMissingGenerator: workers must be 'all' or a list of worker names")
        self.workers = workers
        self.formatter = message_formatter or MessageFormatterMissingWorker()
        self.wanted_event_keys = [("workers", None, "missing")]

    def generate_name(self) -> str:
        name = type(self).__name__
        if self.workers != "all":
            name += "_workers_" + "+".join(self.workers)
        return name

    async def generate(
        self, env: ReporterEnvironment, reporter: ReportSource, key: Key, msg: Item
    ) -> Report | None:
        worker = dict(msg)
        worker.setdefault("workerinfo", {})
        if not worker.get("notify"):
            return None
        if self.workers != "all" and worker.get("name") not in self.workers:
            return None
        message = await self.formatter.format_message_for_missing_worker(env, worker)
        if message["type"] not in ("plain", "html"):
            raise ValueError(
                f"a missing worker's message must be plain or html, not {message['type']!r}"
            )
        return {
            "body": message["body"],
            "subject": message["subject"] or f"Buildbot worker {worker['name']} missing",
            "type": message["type"],
            "results": None,
            "builds": None,
            "buildset": None,
            "users": list(worker["notify"]),
            "patches": None,
            "logs": None,
            "worker": worker["name"],
        }


def commit_status_generators() -> list[Any]:
    """The generators the commit-status reporters (GitHub, GitLab, Bitbucket Server) use by
    default: "Build pending." when a request is made, "Build started." and "Build done."."""
    return [
        BuildRequestGenerator(formatter=MessageFormatterRenderable("Build pending.")),
        BuildStartEndStatusGenerator(
            start_formatter=MessageFormatterRenderable("Build started."),
            end_formatter=MessageFormatterRenderable("Build done."),
        ),
    ]
