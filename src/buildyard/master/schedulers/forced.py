"""``schedulers.ForceScheduler``: builds on request, from the web UI's form or the REST API.

The scheduler's fields are a user name, a reason, a priority, one
:class:`~buildyard.master.schedulers.forceparams.CodebaseParameter` per codebase and the extra
``properties`` parameters. :meth:`ForceSchedulerService.force` validates every submitted field
(all errors together, keyed by field), turns them into properties (source
``"Force Build Form"``) and source stamps, and adds one buildset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from buildyard.common.config_object import is_placeholder
from buildyard.common.errors import config_error
from buildyard.master.model.buildsets import BuildsetIds
from buildyard.master.schedulers.arguments import SchedulerBase
from buildyard.master.schedulers.base import SchedulerContext
from buildyard.master.schedulers.forceparams import (
    DEFAULT_PROPERTY_VALIDATION,
    BaseParameter,
    CodebaseParameter,
    IntParameter,
    NestedParameter,
    StringParameter,
    UserNameParameter,
    ValidationError,
    ValidationErrorCollector,
)
from buildyard.master.schedulers.service import BuildsetScheduler

__all__ = ["ForceScheduler", "ForceSchedulerService"]

# Buildbot's identifier rule (util.identifiers.ident_re)
_IDENTIFIER = re.compile("^[a-zA-Z\u00a0-\U0010ffff_-][a-zA-Z0-9\u00a0-\U0010ffff_-]*$")
_FORM = "Force Build Form"
_PRIORITY_LIMIT = 2**31


class ForceScheduler(SchedulerBase):
    """A form that forces builds of ``builderNames``."""

    buildbot_class = "buildbot.schedulers.forcesched.ForceScheduler"

    def __init__(
        self,
        name: str,
        builderNames: Sequence[str],
        *,
        username: Any = None,
        reason: Any = None,
        reasonString: str = "A build was forced by '%(owner)s': %(reason)s",
        buttonName: str | None = None,
        codebases: Sequence[str | CodebaseParameter] | None = None,
        label: str | None = None,
        properties: Sequence[BaseParameter] | None = None,
        priority: Any = None,
    ) -> None:
        kind = f"ForceScheduler {name!r}"
        if isinstance(name, str) and name and not _IDENTIFIER.match(name):
            config_error(f"ForceScheduler name must be an identifier: {name!r}")
        self.username_parameter: BaseParameter = UserNameParameter()
        if username is not None:
            if isinstance(username, BaseParameter):
                self.username_parameter = username
            else:
                config_error(f"{kind}: username must be a StringParameter: {username!r}")
        self.reason_parameter: BaseParameter = StringParameter(
            name="reason", default="force build", size=20
        )
        if reason is not None:
            if isinstance(reason, BaseParameter):
                self.reason_parameter = reason
            else:
                config_error(f"{kind}: reason must be a StringParameter: {reason!r}")
        self.priority_parameter: BaseParameter = IntParameter(name="priority", default=0)
        if priority is not None:
            if isinstance(priority, IntParameter):
                self.priority_parameter = priority
            else:
                config_error(f"{kind}: priority must be an IntParameter: {priority!r}")

        self.forced_properties: list[BaseParameter] = []
        codebase_defaults: dict[str, dict[str, Any]] = {}
        for codebase in self._codebase_parameters(kind, codebases):
            self.forced_properties.append(codebase)
            codebase_defaults[codebase.codebase] = {"branch": "", "repository": "", "revision": ""}
        self._common(name, builderNames, None, codebase_defaults or {"": {}}, None)
        if self.builder_names_to_render != self.builder_names:
            config_error(f"{kind}: builderNames must be a list of strings: {builderNames!r}")
            self.builder_names_to_render = self.builder_names

        if properties is not None:
            # stand-ins of parameters still to come are already reported: left out
            given = (
                [p for p in properties if not is_placeholder(p)]
                if isinstance(properties, list | tuple)
                else None
            )
            if given is not None and all(isinstance(p, BaseParameter) for p in given):
                self.forced_properties.extend(given)
            else:
                config_error(f"{kind}: properties must be a list of BaseParameters: {properties!r}")

        self.all_fields: list[BaseParameter] = [
            NestedParameter(
                name="",
                fields=[self.username_parameter, self.reason_parameter, self.priority_parameter],
            ),
            *self.forced_properties,
        ]
        self.reason_string = "A build was forced by '%(owner)s': %(reason)s"
        try:
            _ = reasonString % {"owner": "", "reason": ""}
        except (KeyError, ValueError, TypeError) as exc:
            config_error(
                f"{kind}: reasonString {reasonString!r} can only use %(owner)s and %(reason)s "
                f"({exc})"
            )
        else:
            self.reason_string = reasonString
        self.button_name = buttonName or self.name
        self.label = self.name if label is None else label

    @staticmethod
    def _codebase_parameters(kind: str, codebases: object) -> list[CodebaseParameter]:
        if codebases is None:
            return [CodebaseParameter(codebase="")]
        if not isinstance(codebases, list | tuple):
            config_error(
                f"{kind}: 'codebases' should be a list of strings or CodebaseParameter, "
                f"not {type(codebases).__name__}"
            )
            return [CodebaseParameter(codebase="")]
        if not codebases:
            config_error(
                f"{kind}: 'codebases' cannot be empty; use "
                "[CodebaseParameter(codebase='', hide=True)] if needed"
            )
        out: list[CodebaseParameter] = []
        for codebase in codebases:
            if isinstance(codebase, str):
                out.append(CodebaseParameter(codebase=codebase))
            elif isinstance(codebase, CodebaseParameter):
                out.append(codebase)
            else:
                config_error(
                    f"{kind}: 'codebases' must be a list of strings or CodebaseParameter "
                    f"objects: {codebases!r}"
                )
        return out

    def field_specs(self) -> list[dict[str, Any]]:
        """``all_fields`` as the REST API shows them (docs/rest-api.md, "Resources")."""
        return [field.getSpec() for field in self.all_fields]

    def make_service(self, name: str, ctx: SchedulerContext) -> ForceSchedulerService:
        return ForceSchedulerService(name, self, ctx)


class ForceSchedulerService(BuildsetScheduler):
    """The running ForceScheduler. :meth:`force` works on every master (whichever runs the
    scheduler), as in Buildbot."""

    config: ForceScheduler

    def __init__(self, name: str, config: ForceScheduler, ctx: SchedulerContext) -> None:
        super().__init__(name, config, ctx)
        #: c['validation'] patterns for AnyPropertyParameter (the master may set them)
        self.validation: Mapping[str, re.Pattern[str]] = DEFAULT_PROPERTY_VALIDATION

    def data(self) -> dict[str, Any]:
        """The ``forcescheduler`` resource (docs/rest-api.md, "Resources")."""
        cfg = self.config
        return {
            "name": cfg.name,
            "button_name": cfg.button_name,
            "label": cfg.label,
            "builder_names": list(cfg.builder_names),
            "enabled": self.enabled,
            "all_fields": cfg.field_specs(),
        }

    async def _builder_names(
        self, builder_names: Sequence[str] | None, builderid: object
    ) -> list[str]:
        if builder_names is not None and (
            isinstance(builder_names, str | bytes | Mapping)
            or not all(isinstance(name, str) for name in builder_names)
        ):
            raise ValidationError(f"builderNames must be a list of strings: {builder_names!r}")
        if builder_names is None:
            if builderid is not None:
                try:
                    name = await self.queries.builder_name(int(str(builderid)))
                except ValueError:
                    name = None
                return [name] if name is not None else []
            return list(self.config.builder_names)
        return sorted(set(builder_names) & set(self.config.builder_names))

    async def computeBuilderNames(
        self, builderNames: Sequence[str] | None = None, builderid: object = None
    ) -> list[str]:
        """The builders a force with these arguments would build (as Buildbot's; the www's
        authorization asks it)."""
        return await self._builder_names(builderNames, builderid)

    async def force(
        self,
        owner: str | None,
        builderNames: Sequence[str] | None = None,
        builderid: int | str | None = None,
        **kwargs: Any,
    ) -> BuildsetIds:
        """Validate the submitted fields (``kwargs``, by field fullName) and add the buildset.

        Raises :class:`~buildyard.master.schedulers.forceparams.CollectedValidationError`
        (with ``errors`` by field) when a field refuses its value, and
        :class:`~buildyard.master.schedulers.forceparams.ValidationError` when none of the
        requested builders belongs to this scheduler.
        """
        cfg = self.config
        names = await self._builder_names(builderNames, builderid)
        if not names:
            raise ValidationError(
                f"ForceScheduler {cfg.name!r}: builderNames not specified or not supported"
            )
        # every submitted value is a list, as a form posts them
        values: dict[str, Any] = {k: v if isinstance(v, list) else [v] for k, v in kwargs.items()}
        collector = ValidationErrorCollector()
        reason = await collector.collectValidationErrors(
            cfg.reason_parameter.fullName, cfg.reason_parameter.getFromKwargs, values
        )
        if owner is None or owner == "anonymous":
            owner = await collector.collectValidationErrors(
                cfg.username_parameter.fullName, cfg.username_parameter.getFromKwargs, values
            )
        priority = await collector.collectValidationErrors(
            cfg.priority_parameter.fullName, cfg.priority_parameter.getFromKwargs, values
        )
        if isinstance(priority, int) and not -_PRIORITY_LIMIT <= priority < _PRIORITY_LIMIT:
            # a request's priority is a 32-bit integer in the database (PostgreSQL's INTEGER)
            name = cfg.priority_parameter.fullName or "priority"
            collector.errors[name] = f"priority {priority} is out of range"
        properties: dict[str, Any] = {}
        sourcestamps: dict[str, dict[str, Any]] = {}
        for param in cfg.forced_properties:
            await collector.collectValidationErrors(
                param.fullName,
                param.updateFromKwargs,
                master=None,
                properties=properties,
                changes=[],
                sourcestamps=sourcestamps,
                collector=collector,
                kwargs=values,
                validation=self.validation,
            )
        collector.maybeRaiseCollectedErrors()

        props = {name: (value, _FORM) for name, value in properties.items()}
        props["reason"] = (reason, _FORM)
        props["owner"] = (owner, _FORM)
        stamps = [{**ss, "codebase": codebase} for codebase, ss in sourcestamps.items()]
        return await self.add_buildset_for_sourcestamps_with_defaults(
            reason=cfg.reason_string % {"owner": owner, "reason": reason},
            sourcestamps=stamps,
            properties=props,
            builder_names=names,
            priority=priority if isinstance(priority, int) else 0,
        )
