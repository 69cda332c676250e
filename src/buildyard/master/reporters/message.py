"""Message formatters: what a report says about a build, a buildset or a missing worker.

Every formatter answers ``format_message_for_build(env, build, mode=..., users=...,
is_buildset=...)`` with a message dict: ``body`` (a str for ``plain``/``html``, any JSON value
for ``json``), ``type``, ``subject`` and ``extra_info``, as Buildbot's do. ``want_properties``,
``want_steps``, ``want_logs`` and ``want_logs_content`` tell the generator which details of the
build to read first (:mod:`.details`).

:class:`MessageFormatter` renders Jinja2 templates with Buildbot's context names (``build``,
``buildername``, ``buildset``, ``projects``, ``results``, ``previous_results``,
``status_detected``, ``build_url``, ``buildbot_url``, ``buildbot_title``, ``summary``,
``workername``, ``sourcestamps``, ``blamelist``, ``result_names``, ``mode``, ``is_buildset``).
The default templates are buildyard's own wording, carrying the same facts as Buildbot's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jinja2

from buildyard.common.config_object import ConfigObject
from buildyard.common.errors import config_error
from buildyard.compat.results import Results as RESULT_NAMES
from buildyard.master.model.results import Results
from buildyard.master.reporters.details import properties_of, url_for_build
from buildyard.master.reporters.service import ReporterEnvironment, maybe_await

Item = dict[str, Any]
Message = dict[str, Any]

_TEMPLATE_TYPES = ("plain", "html", "json")


def _result_name(results: object) -> str:
    try:
        return Results(results).text  # type: ignore[arg-type]
    except ValueError:
        return str(results)


def status_detected(mode: Sequence[str], results: object, previous: object) -> str:
    """Buildbot's short verdict on a result, given the previous build's."""
    if results == Results.FAILURE:
        if ("change" in mode or "problem" in mode) and previous not in (None, Results.FAILURE):
            return "new failure"
        return "failed build"
    if results == Results.WARNINGS:
        return "problem in the build"
    if results == Results.SUCCESS:
        if "change" in mode and previous is not None and previous != results:
            return "restored build"
        return "passing build"
    if results == Results.EXCEPTION:
        return "build exception"
    return f"{_result_name(results)} build"


def summary_text(build: Mapping[str, Any], results: object) -> str:
    state = f": {build['state_string']}" if build.get("state_string") else ""
    if results == Results.SUCCESS:
        return "Build succeeded!"
    if results == Results.WARNINGS:
        return f"Build Had Warnings{state}"
    if results == Results.CANCELLED:
        return "Build was cancelled"
    return f"BUILD FAILED{state}"


def sourcestamps_text(stamps: Sequence[Mapping[str, Any]]) -> str:
    lines = []
    for ss in stamps:
        where = f"[branch {ss['branch']}] " if ss.get("branch") else ""
        where += str(ss["revision"]) if ss.get("revision") else "HEAD"
        if ss.get("patch") is not None:
            where += " (plus patch)"
        codebase = f" '{ss['codebase']}'" if ss.get("codebase") else ""
        lines.append(f"Build Source Stamp{codebase}: {where}\n")
    return "".join(lines)


def projects_text(stamps: Sequence[Mapping[str, Any]], env: ReporterEnvironment) -> str:
    projects = sorted({str(ss["project"]) for ss in stamps if ss.get("project")})
    return ", ".join(projects) if projects else env.title


def context_for_build(
    env: ReporterEnvironment,
    build: Item,
    *,
    mode: Sequence[str],
    is_buildset: bool,
    users: Sequence[str],
) -> dict[str, Any]:
    buildset = build.get("buildset") or {}
    stamps = buildset.get("sourcestamps") or []
    results = build.get("results")
    prev = build.get("prev_build")
    previous = prev["results"] if prev else None
    props = build.get("properties") or {}
    return {
        "results": results,
        "result_names": RESULT_NAMES,
        "mode": mode,
        "buildername": build["builder"]["name"],
        "workername": props.get("workername", ["<unknown>"])[0],
        "buildset": buildset,
        "build": build,
        "is_buildset": is_buildset,
        "projects": projects_text(stamps, env),
        "previous_results": previous,
        "status_detected": status_detected(mode, results, previous),
        "build_url": url_for_build(env, build["builder"]["builderid"], build["number"]),
        "buildbot_title": env.title,
        "buildbot_url": env.buildbot_url,
        "blamelist": list(users),
        "summary": summary_text(build, results),
        "sourcestamps": sourcestamps_text(stamps),
    }


def context_for_buildset(
    env: ReporterEnvironment,
    buildset: Item,
    builds: Sequence[Item],
    *,
    mode: Sequence[str],
    users: Sequence[str],
) -> dict[str, Any]:
    stamps = buildset.get("sourcestamps") or []
    results = buildset.get("results")
    return {
        "results": results,
        "result_names": RESULT_NAMES,
        "mode": mode,
        "buildset": buildset,
        "builds": list(builds),
        "is_buildset": True,
        "projects": projects_text(stamps, env),
        "status_detected": status_detected(mode, results, None),
        "buildbot_title": env.title,
        "buildbot_url": env.buildbot_url,
        "blamelist": list(users),
        "sourcestamps": sourcestamps_text(stamps),
    }


class MessageFormatterBase(ConfigObject):
    template_type = "plain"

    def __init__(
        self,
        ctx: Mapping[str, Any] | None = None,
        want_properties: bool = True,
        want_steps: bool = False,
        want_logs: bool = False,
        want_logs_content: object = False,
    ) -> None:
        self.context = dict(ctx or {})
        self.want_properties = want_properties
        self.want_steps = want_steps
        self.want_logs = want_logs
        self.want_logs_content = want_logs_content

    def buildAdditionalContext(self, master: Any, ctx: dict[str, Any]) -> Any:
        """Hook for subclasses: add to ``ctx`` before the templates render."""
        return None

    async def render_message_dict(
        self, env: ReporterEnvironment, context: dict[str, Any]
    ) -> Message:
        await maybe_await(self.buildAdditionalContext(env.master, context))
        context.update(self.context)
        return {
            "body": await maybe_await(self.render_message_body(context)),
            "type": self.template_type,
            "subject": await maybe_await(self.render_message_subject(context)),
            "extra_info": await maybe_await(self.render_message_extra_info(context)),
        }

    def render_message_body(self, context: dict[str, Any]) -> Any:
        return None

    def render_message_subject(self, context: dict[str, Any]) -> Any:
        return None

    def render_message_extra_info(self, context: dict[str, Any]) -> Any:
        return None

    async def format_message_for_build(
        self, env: ReporterEnvironment, build: Item, **kwargs: Any
    ) -> Message:
        raise NotImplementedError(f"{type(self).__name__} does not format builds")

    async def format_message_for_buildset(
        self, env: ReporterEnvironment, buildset: Item, builds: Sequence[Item], **kwargs: Any
    ) -> Message:
        raise NotImplementedError(f"{type(self).__name__} does not format buildsets")


class MessageFormatterEmpty(MessageFormatterBase):
    """A message with no body and no subject."""

    async def format_message_for_build(
        self, env: ReporterEnvironment, build: Item, **kwargs: Any
    ) -> Message:
        return {"body": None, "type": "plain", "subject": None, "extra_info": None}

    async def format_message_for_buildset(
        self, env: ReporterEnvironment, buildset: Item, builds: Sequence[Item], **kwargs: Any
    ) -> Message:
        return {"body": None, "type": "plain", "subject": None, "extra_info": None}


class MessageFormatterFunction(MessageFormatterBase):
    """``function(context)`` gives the body; ``context`` holds ``build`` (or ``buildset`` and
    ``builds``)."""

    def __init__(self, function: Any, template_type: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not callable(function):
            config_error(f"MessageFormatterFunction: function must be callable, not {function!r}")
        if template_type not in _TEMPLATE_TYPES:
            config_error(
                f"MessageFormatterFunction: template_type {template_type!r} is not one of "
                f"{', '.join(_TEMPLATE_TYPES)}"
            )
        self.template_type = template_type
        self._function = function

    async def format_message_for_build(
        self, env: ReporterEnvironment, build: Item, **kwargs: Any
    ) -> Message:
        return await self.render_message_dict(env, {"build": build})

    async def format_message_for_buildset(
        self, env: ReporterEnvironment, buildset: Item, builds: Sequence[Item], **kwargs: Any
    ) -> Message:
        return await self.render_message_dict(env, {"buildset": buildset, "builds": list(builds)})

    def render_message_body(self, context: dict[str, Any]) -> Any:
        return self._function(context)


class MessageFormatterFunctionRaw(MessageFormatterBase):
    """``function(master, context)`` gives the whole message dict (``body``, ``type``,
    ``subject``, ``extra_info``); ``context`` is :class:`MessageFormatter`'s."""

    def __init__(self, function: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not callable(function):
            config_error(
                f"MessageFormatterFunctionRaw: function must be callable, not {function!r}"
            )
        self._function = function

    async def _call(self, env: ReporterEnvironment, ctx: dict[str, Any]) -> Message:
        found = await maybe_await(self._function(env.master, ctx))
        if not isinstance(found, Mapping):
            raise TypeError(
                f"MessageFormatterFunctionRaw: the function returned {found!r}, not a dict"
            )
        return {
            "body": found.get("body"),
            "type": found.get("type", "plain"),
            "subject": found.get("subject"),
            "extra_info": found.get("extra_info"),
        }

    async def format_message_for_build(
        self,
        env: ReporterEnvironment,
        build: Item,
        *,
        is_buildset: bool = False,
        users: Sequence[str] = (),
        mode: Sequence[str] = (),
        **kwargs: Any,
    ) -> Message:
        ctx = context_for_build(env, build, mode=mode, is_buildset=is_buildset, users=users)
        return await self._call(env, ctx)

    async def format_message_for_buildset(
        self,
        env: ReporterEnvironment,
        buildset: Item,
        builds: Sequence[Item],
        *,
        users: Sequence[str] = (),
        mode: Sequence[str] = (),
        **kwargs: Any,
    ) -> Message:
        return await self._call(
            env, context_for_buildset(env, buildset, builds, mode=mode, users=users)
        )


class MessageFormatterRenderable(MessageFormatterBase):
    """The body (and subject) are renderables (``util.Interpolate(...)``, a plain string,
    None), rendered with the build's properties."""

    def __init__(self, template: Any, subject: Any = None) -> None:
        super().__init__()
        self.template = template
        self.subject = subject

    async def format_message_for_build(
        self, env: ReporterEnvironment, build: Item, **kwargs: Any
    ) -> Message:
        props = properties_of(env, build)
        return {
            "body": await props.render(self.template),
            "type": self.template_type,
            "subject": None if self.subject is None else await props.render(self.subject),
            "extra_info": None,
        }


_DEFAULT_PLAIN = """\
{{ status_detected | capitalize }} on builder {{ buildername }} ({{ projects }}).

Details: {{ build_url }}

State: {{ build['state_string'] }}
Revision: {{ build['properties'].get('got_revision', ['(unknown)'])[0] }}
Worker: {{ workername }}
Reason: {{ build['properties'].get('reason', ['(unknown)'])[0] }}
Blamelist: {{ blamelist | join(', ') }}

Steps:
{% for step in build.get('steps') or [] -%}
* {{ step['number'] }} {{ step['name'] }}: {{ result_names[step['results']]
    if step['results'] is not none else 'not finished' }}
{% for log in step.get('logs') or [] %}    {{ log['name'] }}: {{ log['url'] }}
{% endfor %}{% else %}(none)
{% endfor %}"""

_DEFAULT_HTML = """\
<p>{{ status_detected | capitalize }} on builder <a href="{{ build_url }}">{{ buildername }}</a>
({{ projects }}).</p>
<table>
<tr><th>State</th><td>{{ build['state_string'] }}</td></tr>
<tr><th>Revision</th><td>{{ build['properties'].get('got_revision', ['(unknown)'])[0] }}</td></tr>
<tr><th>Worker</th><td>{{ workername }}</td></tr>
<tr><th>Reason</th><td>{{ build['properties'].get('reason', ['(unknown)'])[0] }}</td></tr>
<tr><th>Blamelist</th><td>{{ blamelist | join(', ') }}</td></tr>
</table>
<ol>
{% for step in build.get('steps') or [] -%}
<li>{{ step['name'] }}: {{ result_names[step['results']]
    if step['results'] is not none else 'not finished' }}
{% for log in step.get('logs') or [] -%}
 <a href="{{ log['url'] }}">{{ log['name'] }}</a>
{%- endfor %}</li>
{% endfor %}</ol>
"""

_DEFAULT_SUBJECT = (
    "{{ buildbot_title }}: "
    "{{ (build['properties'].get('project', ['whole buildset'])[0] or 'whole buildset') "
    "if is_buildset else buildername }} "
    "{{ result_names[results] if results is not none else 'running' }}"
    "{% set branch = build['properties'].get('branch', [None])[0] %}"
    " ({{ branch or build['properties'].get('got_revision', ['unknown revision'])[0] }})"
)

_DEFAULT_MISSING_PLAIN = """\
Worker {{ worker['name'] }} of {{ buildbot_title }} is gone.
Last connected: {{ worker['last_connection'] }}
{% if 'admin' in worker['workerinfo'] -%}
Admin (from the worker's info/admin): {{ worker['workerinfo']['admin'] }}
{% endif %}"""

_DEFAULT_MISSING_HTML = """\
<p>Worker {{ worker['name'] }} of {{ buildbot_title }} is gone.</p>
<p>Last connected: {{ worker['last_connection'] }}</p>
{% if 'admin' in worker['workerinfo'] -%}
<p>Admin (from the worker's info/admin): {{ worker['workerinfo']['admin'] }}</p>
{% endif %}"""

_DEFAULT_MISSING_SUBJECT = "{{ buildbot_title }}: worker {{ worker['name'] }} is missing"


def _template(owner: str, what: str, text: object) -> jinja2.Template | None:
    if not isinstance(text, str):
        config_error(f"{owner}: {what} must be a string (a Jinja2 template), not {text!r}")
        return None
    try:
        template: jinja2.Template = jinja2.Template(text)
    except jinja2.TemplateSyntaxError as exc:
        config_error(f"{owner}: {what} is not a valid Jinja2 template: {exc} (line {exc.lineno})")
        return None
    return template


class MessageFormatterBaseJinja(MessageFormatterBase):
    _default_templates: Mapping[str, str] = {"plain": _DEFAULT_PLAIN, "html": _DEFAULT_HTML}
    _default_subject = _DEFAULT_SUBJECT

    def __init__(
        self,
        template: str | None = None,
        subject: str | None = None,
        template_type: str | None = None,
        extra_info_cb: Callable[[dict[str, Any]], Any] | None = None,
        **kwargs: Any,
    ) -> None:
        owner = type(self).__name__
        self.template_type = template_type or "plain"
        self.uses_default_body_template = template is None
        if template is None:
            if self.template_type not in self._default_templates:
                config_error(
                    f"{owner}: there is no default template of type {self.template_type!r}; "
                    f"give a template, or template_type 'plain' or 'html'"
                )
            template = self._default_templates.get(self.template_type, "")
            kwargs.setdefault("want_steps", True)
            kwargs.setdefault("want_logs", True)
        elif self.template_type not in _TEMPLATE_TYPES:
            config_error(
                f"{owner}: template_type {self.template_type!r} is not one of "
                f"{', '.join(_TEMPLATE_TYPES)}"
            )
        super().__init__(**kwargs)
        self.body_template = _template(owner, "template", template)
        self.subject_template = _template(
            owner, "subject", self._default_subject if subject is None else subject
        )
        self.extra_info_cb = extra_info_cb

    def render_message_body(self, context: dict[str, Any]) -> Any:
        return None if self.body_template is None else self.body_template.render(context)

    def render_message_subject(self, context: dict[str, Any]) -> Any:
        return None if self.subject_template is None else self.subject_template.render(context)

    def render_message_extra_info(self, context: dict[str, Any]) -> Any:
        return None if self.extra_info_cb is None else self.extra_info_cb(context)


class MessageFormatter(MessageFormatterBaseJinja):
    """Jinja2 ``template`` and ``subject`` (``template_type`` ``plain``, ``html`` or ``json``)."""

    async def format_message_for_build(
        self,
        env: ReporterEnvironment,
        build: Item,
        *,
        is_buildset: bool = False,
        users: Sequence[str] = (),
        mode: Sequence[str] = (),
        **kwargs: Any,
    ) -> Message:
        ctx = context_for_build(env, build, mode=mode, is_buildset=is_buildset, users=users)
        return await self.render_message_dict(env, ctx)

    async def format_message_for_buildset(
        self,
        env: ReporterEnvironment,
        buildset: Item,
        builds: Sequence[Item],
        *,
        users: Sequence[str] = (),
        mode: Sequence[str] = (),
        **kwargs: Any,
    ) -> Message:
        ctx = context_for_buildset(env, buildset, builds, mode=mode, users=users)
        return await self.render_message_dict(env, ctx)


class MessageFormatterMissingWorker(MessageFormatterBaseJinja):
    """The message about a worker gone missing; the context has ``worker``,
    ``buildbot_title`` and ``buildbot_url``."""

    _default_templates = {"plain": _DEFAULT_MISSING_PLAIN, "html": _DEFAULT_MISSING_HTML}
    _default_subject = _DEFAULT_MISSING_SUBJECT

    async def format_message_for_missing_worker(
        self, env: ReporterEnvironment, worker: Item
    ) -> Message:
        ctx = {"buildbot_title": env.title, "buildbot_url": env.buildbot_url, "worker": worker}
        return await self.render_message_dict(env, ctx)
