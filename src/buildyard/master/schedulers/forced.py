"""``schedulers.ForceScheduler``: builds on request, from the web UI's form or the REST API.

A :class:`ForceForm` holds the scheduler's fields: who forces (a user name), why (a reason), how
urgently (a priority), then one
:class:`~buildyard.master.schedulers.forceparams.CodebaseParameter` per codebase and the extra
``properties`` parameters. :meth:`ForceForm.read` turns a request into a :class:`ForcedBuild`
(or refuses it with every field's error at once, keyed by field), and
:meth:`ForceSchedulerService.force` adds the buildset it describes. The form's values become
properties with the source ``"Force Build Form"``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from buildyard.common.awaitables import deferred_compatible
from buildyard.common.config_object import is_placeholder
from buildyard.common.errors import config_error
from buildyard.master.model.buildsets import BuildsetIds
from buildyard.master.schedulers.arguments import SchedulerBase
from buildyard.master.schedulers.base import SchedulerContext
from buildyard.master.schedulers.forceparams import (
    DEFAULT_PROPERTY_VALIDATION,
    BaseParameter,
    CodebaseParameter,
    FormReading,
    IntParameter,
    NestedParameter,
    StringParameter,
    UserNameParameter,
    ValidationError,
)
from buildyard.master.schedulers.service import BuildsetScheduler

__all__ = ["ForceForm", "ForceScheduler", "ForceSchedulerService", "ForcedBuild"]

# Buildbot's identifier rule (util.identifiers.ident_re)
_IDENTIFIER = re.compile("^[a-zA-Z\u00a0-\U0010ffff_-][a-zA-Z0-9\u00a0-\U0010ffff_-]*$")
_FORM = "Force Build Form"
# a request's priority is a 32-bit integer in the database (PostgreSQL's INTEGER)
_PRIORITY_LIMIT = 2**31


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ForcedBuild:
    """What a valid force request asks for."""

    owner: Any
    reason: Any
    priority: int
    #: every property with its source, ``owner`` and ``reason`` included
    properties: dict[str, tuple[Any, str]]
    #: one stamp per codebase of the form, each with its ``codebase``
    sourcestamps: list[dict[str, Any]]


class ForceForm:
    """The fields of one force scheduler, and how a request for it is read."""

    def __init__(
        self,
        *,
        username: BaseParameter,
        reason: BaseParameter,
        priority: BaseParameter,
        fields: Sequence[BaseParameter],
    ) -> None:
        self.username = username
        self.reason = reason
        self.priority = priority
        self.fields = list(fields)
        #: the form as the web UI draws it: who, why and how urgently first, in one row
        self.all_fields: list[BaseParameter] = [
            NestedParameter(name="", fields=[username, reason, priority]),
            *self.fields,
        ]

    async def read(
        self,
        submitted: Mapping[str, Any],
        *,
        owner: str | None,
        validation: Mapping[str, re.Pattern[str]],
    ) -> ForcedBuild:
        """The build that ``submitted`` (values by field fullName) asks for. The form's user
        name is the owner only when the request has none of its own (or is anonymous).

        Raises CollectedValidationError with every refusing field's message."""
        reading = FormReading(submitted, validation=validation)
        why = await self._one(reading, self.reason)
        if owner is None or owner == "anonymous":
            owner = await self._one(reading, self.username)
        urgency = await self._one(reading, self.priority)
        if isinstance(urgency, int) and not -_PRIORITY_LIMIT <= urgency < _PRIORITY_LIMIT:
            reading.errors[self.priority.fullName or "priority"] = (
                f"priority {urgency} is out of range"
            )
        await reading.read(self.fields, reading.properties)
        reading.raise_refusals()
        properties = {name: (value, _FORM) for name, value in reading.properties.items()}
        properties.update(reason=(why, _FORM), owner=(owner, _FORM))
        return ForcedBuild(
            owner=owner,
            reason=why,
            priority=urgency if isinstance(urgency, int) else 0,
            properties=properties,
            sourcestamps=[
                {**stamp, "codebase": codebase} for codebase, stamp in reading.sourcestamps.items()
            ],
        )

    @staticmethod
    async def _one(reading: FormReading, field: BaseParameter) -> Any:
        """The value of one field on its own (None when it refuses, recorded in ``reading``)."""
        found: dict[str, Any] = {}
        await reading.read([field], found)
        return found.get(field.name)


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

        self.form = ForceForm(
            username=self.username_parameter,
            reason=self.reason_parameter,
            priority=self.priority_parameter,
            fields=self.forced_properties,
        )
        self.all_fields = self.form.all_fields
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
        return [field.getSpec() for field in self.form.all_fields]

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

    @deferred_compatible
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
        requested builders belongs to this scheduler. Users' code calls it too (a chat bot's
        own command: ``scheduler.force(owner=..., package=...)``), Twisted-style code included.
        """
        cfg = self.config
        names = await self._builder_names(builderNames, builderid)
        if not names:
            raise ValidationError(
                f"ForceScheduler {cfg.name!r}: builderNames not specified or not supported"
            )
        build = await cfg.form.read(kwargs, owner=owner, validation=self.validation)
        return await self.add_buildset_for_sourcestamps_with_defaults(
            reason=cfg.reason_string % {"owner": build.owner, "reason": build.reason},
            sourcestamps=build.sourcestamps,
            properties=build.properties,
            builder_names=names,
            priority=build.priority,
        )
