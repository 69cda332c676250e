"""The fields of a ``ForceScheduler`` form: ``util.StringParameter``, ``util.IntParameter``, ...

A parameter is a master.cfg value with two jobs. It describes its form field
(:meth:`BaseParameter.describe`, the JSON the web UI draws: docs/rest-api.md, "Resources"), and
it reads its part of a force request.

Reading a request: the scheduler opens a :class:`FormReading` over the submitted values (keyed
by each field's ``fullName``: ``<group>_<name>`` inside a named group) and asks each field to
:meth:`~BaseParameter.contribute` to it. A plain field reads its value through a small pipeline
of stages built from its arguments (blank values dropped, the default or "needs to be
specified", ``regex``, ``maxsize``), then its type's conversion; the value lands in a properties
dict under the field's name. A group collects its children into a dict; a codebase group turns
that dict into a source stamp. A field that refuses its value raises :class:`ValidationError`;
the reading records the message under the field's ``fullName`` and goes on, so the user sees
every refusal at once (:class:`CollectedValidationError`).

master.cfg code may subclass the parameters with Buildbot's extension points, and they are
honoured: ``parse_from_arg``/``parse_from_args`` (the conversion), ``getFromKwargs(kwargs)`` (a
field's whole value, given the submitted lists), ``updateFromKwargs(properties, kwargs, ...)``
(anything, such as several properties), ``CodebaseParameter.createSourcestamp`` and
``ChoiceStringParameter.getChoices``.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Protocol

from buildyard.common.awaitables import resolve
from buildyard.common.config_object import ConfigObject
from buildyard.common.errors import config_error

__all__ = [
    "AnyPropertyParameter",
    "BaseParameter",
    "BooleanParameter",
    "ChoiceStringParameter",
    "CodebaseParameter",
    "CollectedValidationError",
    "FileParameter",
    "FixedParameter",
    "FormReading",
    "IntParameter",
    "NestedParameter",
    "ParameterGroup",
    "PatchParameter",
    "StringParameter",
    "TextParameter",
    "UserNameParameter",
    "ValidationError",
    "ValidationErrorCollector",
]

# the scheduler's own arguments in a force request: no field may take these names
_RESERVED = frozenset({"owner", "builderNames", "builderid"})
# a user name must contain an e-mail address (Buildbot accepts the same shapes)
_EMAIL_ADDRESS = re.compile(r"\S+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+\.?")
# c['validation']'s defaults: what AnyPropertyParameter lets users name and set
DEFAULT_PROPERTY_VALIDATION: Mapping[str, re.Pattern[str]] = {
    "property_name": re.compile(r"^[\w\.\-/~:]*$"),
    "property_value": re.compile(r"^[\w\.\-/~:]*$"),
}


class ValidationError(ValueError):
    """A submitted value that the field refuses."""


class CollectedValidationError(ValidationError):
    """Every field's refusal of one force request: ``errors`` maps a field's ``fullName`` to its
    message (what the REST API returns, so the UI can show each next to its field)."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("\n".join(f"{name}: {message}" for name, message in self.errors.items()))


# ---------------------------------------------------------------------------------------------
# One request being read


class FormReading:
    """One force request being read: what was submitted, and what the fields make of it.

    ``properties`` and ``sourcestamps`` (by codebase) fill up as fields contribute; ``errors``
    holds each refusing field's message by its ``fullName``. ``validation`` is
    ``c['validation']``, for the fields that let users name properties.
    """

    def __init__(
        self,
        submitted: Mapping[Any, Any] | None = None,
        *,
        validation: Mapping[str, re.Pattern[str]] = DEFAULT_PROPERTY_VALIDATION,
    ) -> None:
        # a form posts every value as a list; a JSON-RPC caller may send single values
        self._submitted: dict[Any, tuple[Any, ...]] = {
            key: tuple(value) if isinstance(value, list | tuple) else (value,)
            for key, value in (submitted or {}).items()
        }
        self.validation = validation
        self.properties: dict[str, Any] = {}
        self.sourcestamps: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, str] = {}

    def submitted(self, key: str | None) -> tuple[Any, ...]:
        """What was posted under ``key`` (possibly nothing)."""
        return self._submitted.get(key, ())

    def as_kwargs(self) -> dict[Any, Any]:
        """The request in Buildbot's shape, a list per key, for extension points written
        against it."""
        return {key: list(values) for key, values in self._submitted.items()}

    @contextlib.contextmanager
    def refusals_of(self, field: BaseParameter) -> Iterator[None]:
        """Record a ValueError raised while ``field`` reads as its refusal, and go on."""
        try:
            yield
        except CollectedValidationError as refusals:
            self.errors.update(refusals.errors)
        except ValueError as refusal:
            self.errors[field.fullName or ""] = str(refusal)

    async def read(self, fields: Sequence[BaseParameter], into: dict[str, Any]) -> None:
        """Let each of ``fields`` put its value into ``into``, recording refusals."""
        for field in fields:
            with self.refusals_of(field):
                await field.contribute(self, into)

    def raise_refusals(self) -> None:
        if self.errors:
            raise CollectedValidationError(self.errors)

    # Buildbot's names, for updateFromKwargs overrides that get this object as ``collector``

    async def collectValidationErrors(
        self, name: str | None, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """``fn(*args, **kwargs)``, awaited if need be; a ValueError is recorded under
        ``name`` and None returned."""
        try:
            result = fn(*args, **kwargs)
            return await resolve(result)
        except CollectedValidationError as refusals:
            self.errors.update(refusals.errors)
        except ValueError as refusal:
            self.errors[name or ""] = str(refusal)
        return None

    def maybeRaiseCollectedErrors(self) -> None:
        self.raise_refusals()


#: what master.cfg code written for Buildbot calls the object collecting a request's refusals
ValidationErrorCollector = FormReading


# ---------------------------------------------------------------------------------------------
# The stages a plain field's submitted values go through


class _Stage(Protocol):
    def __call__(self, values: tuple[Any, ...]) -> tuple[Any, ...]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class _Fallback:
    """No value given: the default (or the defaults, for a multiple field), unless required."""

    label: str
    required: bool
    default: Any
    multiple: bool

    def __call__(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        if values:
            return values
        if self.required:
            raise ValidationError(f"'{self.label}' needs to be specified")
        return tuple(self.default) if self.multiple else (self.default,)


@dataclasses.dataclass(frozen=True, slots=True)
class _Matches:
    label: str
    pattern: re.Pattern[str]

    def __call__(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        for value in values:
            if self.pattern.match(str(value)) is None:
                raise ValidationError(
                    f"{self.label}:'{value}' does not match pattern '{self.pattern.pattern}'"
                )
        return values


@dataclasses.dataclass(frozen=True, slots=True)
class _SizeLimit:
    label: str
    maxsize: int

    def __call__(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        for value in values:
            size = len(value)
            if size > self.maxsize:
                raise ValidationError(f"{self.label}: is too large {size} > {self.maxsize}")
        return values


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


@dataclasses.dataclass(frozen=True, slots=True)
class _OfKinds:
    """Each submitted value is of one of the field's kinds (a form posts strings; API clients
    send JSON's scalars, and may send objects or lists a field cannot take)."""

    key: str | None
    kinds: tuple[builtins.type, ...]

    def __call__(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        for value in values:
            # bool is an int to isinstance: a field that takes integers takes no booleans
            if not isinstance(value, self.kinds) or (
                isinstance(value, bool) and bool not in self.kinds
            ):
                names = [_TYPE_NAMES[t] for t in self.kinds]
                kinds = " or ".join([", ".join(names[:-1]), names[-1]] if names[:-1] else names)
                raise ValidationError(
                    f"{self.key}: must be {kinds}, not {type(value).__name__} {value!r:.40}"
                )
        return values


def _without_blanks(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """A blank text box counts as not filled in."""
    return tuple(v for v in values if not (isinstance(v, str) and not v.strip()))


def _overrides(field: BaseParameter, hook: str) -> bool:
    """Whether master.cfg code overrode Buildbot's extension point ``hook`` on this field."""
    own = getattr(BaseParameter, hook)
    found = getattr(type(field), hook)
    return found is not own and getattr(found, "__module__", None) != __name__


class _DefaultField:
    def __repr__(self) -> str:
        return "DefaultField"


#: "the standard field" for CodebaseParameter's branch/revision/repository/project
DefaultField: Any = _DefaultField()


# ---------------------------------------------------------------------------------------------
# The parameters


class BaseParameter(ConfigObject):
    """One form field. Keyword arguments beyond those named become attributes (``default``,
    ``required``, ``multiple``, ``hide``, ``maxsize``, ``tooltip``, ``size``, ...)."""

    name: str = ""
    label: str = ""
    tablabel: str = ""
    type: str = ""
    default: Any = ""
    required: bool = False
    multiple: bool = False
    # what a submitted value may be (a form posts strings; API clients send JSON's scalars)
    submitted_types: ClassVar[tuple[builtins.type, ...]] = (str, int, float, bool)
    regex: re.Pattern[str] | None = None
    hide: bool = False
    maxsize: int | None = None
    autopopulate: Any = None
    tooltip: str = ""
    # the fullName of the group this field sits in ("" at the top or in an anonymous group)
    _group: str = ""

    def __init__(
        self,
        name: Any,
        label: str | None = None,
        tablabel: str | None = None,
        regex: str | re.Pattern[str] | None = None,
        **kw: Any,
    ) -> None:
        if name in _RESERVED:
            config_error(f"{name} cannot be used as a parameter name, because it is reserved")
        if not isinstance(name, str):
            config_error(f"parameter name must be a string, not {name!r}")
            name = str(name)
        if "value" in kw:
            config_error(
                f"parameter {name!r}: use default={kw['value']!r} instead of value=... to give "
                "a default value"
            )
        self.name = name
        self.label = name if label is None else label
        self.tablabel = self.label if tablabel is None else tablabel
        if regex:
            try:
                self.regex = re.compile(regex)
            except re.error as exc:
                config_error(f"parameter {name!r}: regex {regex!r} is not valid: {exc}")
        vars(self).update(kw)

    @property
    def fullName(self) -> str | None:
        """The field's key in a request: ``<group>_<name>`` inside a named group (None for an
        anonymous group at the top, as Buildbot's UI expects)."""
        if self._group and self.name:
            return f"{self._group}_{self.name}"
        return self.name or self._group or None

    def _place_in(self, group: str) -> None:
        self._group = group

    # -- the form field ------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The field as the web UI reads it (the ``all_fields`` entries of the REST API)."""
        return {
            "name": self.name,
            "fullName": self.fullName,
            "label": self.label,
            "tablabel": self.tablabel,
            "type": self.type,
            "default": self.default,
            "required": self.required,
            "multiple": self.multiple,
            # a compiled pattern has no JSON form (Buildbot's UI gets null as well)
            "regex": None,
            "hide": self.hide,
            "maxsize": self.maxsize,
            "autopopulate": self.autopopulate,
            "tooltip": self.tooltip,
        }

    def getSpec(self) -> dict[str, Any]:
        """Buildbot's name for :meth:`describe`, with the ``spec_attributes`` that parameter
        classes of master.cfg add (Buildbot's way for a custom field to show more)."""
        spec = self.describe()
        for cls in type(self).__mro__:
            if cls.__module__ != __name__:
                for attr in vars(cls).get("spec_attributes", ()):
                    spec[attr] = getattr(self, attr, None)
        return spec

    # -- reading a request ---------------------------------------------------------------------

    def _stages(self) -> list[_Stage]:
        stages: list[_Stage] = [
            _OfKinds(self.fullName, self.submitted_types),
            _without_blanks,
            _Fallback(self.label, self.required, self.default, self.multiple),
        ]
        if self.regex is not None:
            stages.append(_Matches(self.label, self.regex))
        if self.maxsize is not None:
            stages.append(_SizeLimit(self.label, self.maxsize))
        return stages

    def value_from(self, reading: FormReading) -> Any:
        """The field's value in the request: its submitted values through the stages, then
        converted by :meth:`parse_from_args`."""
        values = reading.submitted(self.fullName)
        for stage in self._stages():
            values = stage(values)
        value = self.parse_from_args(list(values))
        if value is None:
            raise ValidationError(f"need {self.fullName}: no default provided by config")
        return value

    async def contribute(self, reading: FormReading, into: dict[str, Any]) -> None:
        """Put what this field reads from the request into ``into`` (a properties dict): what
        a master.cfg override of ``updateFromKwargs`` does, else :meth:`_contribute`."""
        if not _overrides(self, "updateFromKwargs"):
            await self._contribute(reading, into)
            return
        done = self.updateFromKwargs(
            properties=into,
            kwargs=reading.as_kwargs(),
            collector=reading,
            master=None,
            changes=[],
            sourcestamps=reading.sourcestamps,
        )
        await resolve(done)

    async def _contribute(self, reading: FormReading, into: dict[str, Any]) -> None:
        """This kind of field's own contribution: its value under its name."""
        if _overrides(self, "getFromKwargs"):
            into[self.name] = self.getFromKwargs(reading.as_kwargs())
        else:
            into[self.name] = self.value_from(reading)

    # Buildbot's extension points, for master.cfg subclasses (and code calling them)

    def parse_from_args(self, values: list[Any]) -> Any:
        """The field's value from its checked values: the list converted one by one for a
        ``multiple`` field, else the first one."""
        if self.multiple:
            return [self.parse_from_arg(v) for v in values]
        return self.parse_from_arg(values[0])

    def parse_from_arg(self, s: Any) -> Any:
        """One submitted value converted to the property's value (as it is, here)."""
        return s

    def getFromKwargs(self, kwargs: Mapping[Any, Any]) -> Any:
        """The field's value, from the request in Buildbot's shape (lists by fullName)."""
        return self.value_from(FormReading(kwargs))

    def updateFromKwargs(
        self,
        properties: dict[str, Any],
        kwargs: Mapping[Any, Any],
        collector: FormReading | None = None,
        **unused: Any,
    ) -> Any:
        """Put the field's value into ``properties``."""
        properties[self.name] = self.getFromKwargs(kwargs)


class FixedParameter(BaseParameter):
    """A value the user cannot change (hidden; always ``default``)."""

    type = "fixed"
    hide = True

    def parse_from_args(self, values: list[Any]) -> Any:
        return self.default


class StringParameter(BaseParameter):
    """A one-line string."""

    type = "text"
    submitted_types: ClassVar[tuple[builtins.type, ...]] = (str,)
    size = 10

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "size": self.size}


class TextParameter(StringParameter):
    """A string that may span several lines."""

    type = "textarea"
    cols = 80
    rows = 20

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "cols": self.cols, "rows": self.rows}

    def value_to_text(self, value: Any) -> str:
        """How a value is shown in the text box (override with parse_from_arg for values that
        are not strings)."""
        return str(value)


class IntParameter(StringParameter):
    """An integer."""

    type = "int"
    submitted_types: ClassVar[tuple[builtins.type, ...]] = (str, int, float)
    default: Any = 0

    def parse_from_arg(self, s: Any) -> Any:
        # int() would take True, and cut 2.5 to 2: a form field means neither
        if isinstance(s, bool) or (isinstance(s, float) and not s.is_integer()):
            raise ValidationError(f"{self.label}: {s!r} is not an integer")
        try:
            return int(s)
        except (TypeError, ValueError):
            raise ValidationError(f"{self.label}: '{s}' is not an integer") from None


class BooleanParameter(BaseParameter):
    """A check box: true only when the one submitted value is ``True``."""

    type = "bool"

    def value_from(self, reading: FormReading) -> Any:
        return (reading.submitted(self.fullName) or (self.default,)) == (True,)


class UserNameParameter(StringParameter):
    """Who forces the build (the ``owner``); by default an e-mail address is required."""

    type = "username"
    default: Any = ""
    size = 30
    need_email = True

    def __init__(self, name: str = "username", label: str = "Your name:", **kw: Any) -> None:
        super().__init__(name, label, **kw)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "need_email": self.need_email}

    def parse_from_arg(self, s: Any) -> Any:
        wants_address = self.need_email and (s or self.required)
        if wants_address and not (isinstance(s, str) and _EMAIL_ADDRESS.search(s)):
            raise ValidationError(
                f"{self.name}: please fill in email address in the form 'User <email@email.com>'"
            )
        return s


class ChoiceStringParameter(BaseParameter):
    """One of ``choices`` (any string when ``strict=False``)."""

    type = "list"
    choices: Sequence[str] = ()
    strict = True

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "choices": list(self.choices), "strict": self.strict}

    def parse_from_arg(self, s: Any) -> Any:
        if self.strict and s not in self.choices:
            raise ValidationError(
                f"'{s}' does not belong to list of available choices '{list(self.choices)}'"
            )
        return s

    def getChoices(self, master: Any, scheduler: Any, buildername: str | None) -> Sequence[str]:
        return self.choices


class FileParameter(BaseParameter):
    """The content of an uploaded file (10 MB at most unless ``maxsize`` says otherwise)."""

    type = "file"
    submitted_types: ClassVar[tuple[builtins.type, ...]] = (str,)
    maxsize: int | None = 10 * 1024 * 1024


class NestedParameter(BaseParameter):
    """A group of fields. Its children's full names start with its own (unless its name is
    empty); its value is a dict of theirs, or, when its name is empty, their values directly."""

    type = "nested"
    layout = "vertical"
    fields: Sequence[BaseParameter] = ()
    columns: int | None = None

    def __init__(self, name: str, fields: Sequence[BaseParameter], **kwargs: Any) -> None:
        super().__init__(name, fields=list(fields), **kwargs)
        if not all(isinstance(f, BaseParameter) for f in self.fields):
            config_error(f"parameter {name!r}: fields must be parameters, not {list(fields)!r}")
            self.fields = [f for f in self.fields if isinstance(f, BaseParameter)]
        if self.columns is None:
            visible = sum(1 for f in self.fields if not f.hide)
            self.columns = 2 if visible >= 4 else 1
        if self.columns > 4:
            config_error("UI only support up to 4 columns in nested parameters")
        self._place_in("")

    def _place_in(self, group: str) -> None:
        super()._place_in(group)
        for field in self.fields:
            field._place_in(self.fullName or "")

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "layout": self.layout,
            "columns": self.columns,
            "fields": [field.getSpec() for field in self.fields],
        }

    async def collected(self, reading: FormReading) -> dict[str, Any]:
        """The children's values by name (a refusing child is recorded and left out)."""
        values: dict[str, Any] = {}
        await reading.read(self.fields, values)
        return values

    async def _contribute(self, reading: FormReading, into: dict[str, Any]) -> None:
        if _overrides(self, "getFromKwargs"):
            await super()._contribute(reading, into)
            return
        values = await self.collected(reading)
        if self.name:
            into.setdefault(self.name, {}).update(values)
        else:
            into.update(values)

    async def updateFromKwargs(
        self,
        properties: dict[str, Any],
        kwargs: Mapping[Any, Any],
        collector: FormReading | None = None,
        **unused: Any,
    ) -> None:
        """What the group does with a request (for overrides that call it through super())."""
        await self._contribute(collector or FormReading(kwargs), properties)


ParameterGroup = NestedParameter


class AnyPropertyParameter(NestedParameter):
    """A property whose name and value the user both types."""

    def __init__(self, name: str, **kw: Any) -> None:
        fields = [
            StringParameter(name="name", label="Name:"),
            StringParameter(name="value", label="Value:"),
        ]
        super().__init__(name, label="", fields=fields, **kw)

    def getFromKwargs(self, kwargs: Mapping[Any, Any]) -> Any:
        raise ValidationError("AnyPropertyParameter can only be used by properties")

    async def _contribute(self, reading: FormReading, into: dict[str, Any]) -> None:
        typed = await self.collected(reading)
        name, value = typed.get("name", ""), typed.get("value", "")
        if not name:
            return  # left empty: no property
        rules = reading.validation
        if not (rules["property_name"].match(name) and rules["property_value"].match(value)):
            raise ValidationError(f"bad property name='{name}', value='{value}'")
        into[name] = value


class CodebaseParameter(NestedParameter):
    """The source stamp of one codebase: branch, revision, repository and project fields (a
    string makes the field fixed, None leaves it out) and optionally a ``patch``."""

    codebase = ""

    def __init__(
        self,
        codebase: str,
        name: str | None = None,
        label: str | None = None,
        branch: Any = DefaultField,
        revision: Any = DefaultField,
        repository: Any = DefaultField,
        project: Any = DefaultField,
        patch: BaseParameter | None = None,
        **kwargs: Any,
    ) -> None:
        if label is None and codebase:
            label = f"Codebase: {codebase}"
        fields = [
            field
            for key, given in sorted(
                {
                    "branch": branch,
                    "revision": revision,
                    "repository": repository,
                    "project": project,
                }.items()
            )
            if (field := self._stamp_field(key, given)) is not None
        ]
        if patch is not None:
            if patch.name != "patch":
                config_error("patch parameter of a codebase must be named 'patch'")
            fields.append(patch)
            kwargs.setdefault("columns", 1)
        super().__init__(
            name=name or codebase, label=label, codebase=codebase, fields=fields, **kwargs
        )

    @staticmethod
    def _stamp_field(key: str, given: Any) -> BaseParameter | None:
        """The field of one source stamp attribute: a text box by default, a fixed value for
        a string (even an empty one), none for None."""
        if given is DefaultField:
            return StringParameter(name=key, label=f"{key.capitalize()}:")
        if isinstance(given, str):
            return FixedParameter(name=key, default=given)
        return given or None

    def createSourcestamp(self, properties: dict[str, Any], kwargs: dict[Any, Any]) -> Any:
        """The source stamp from the collected field values, which ``kwargs[self.fullName]``
        holds (override to compute one; may return an awaitable, or None for no stamp)."""
        return kwargs.get(self.fullName, {})

    async def _contribute(self, reading: FormReading, into: dict[str, Any]) -> None:
        values = await self.collected(reading)
        kwargs = reading.as_kwargs()
        kwargs[self.fullName] = values
        stamp = self.createSourcestamp(into, kwargs)
        stamp = await resolve(stamp)
        if stamp is None:
            return
        flat = {key: value for key, value in dict(stamp).items() if key != "patch"}
        # the stamp keeps a patch as patch_body, patch_level, ... (Buildbot's buildset form)
        flat.update({f"patch_{key}": value for key, value in (stamp.get("patch") or {}).items()})
        reading.sourcestamps[self.codebase] = flat


class PatchParameter(NestedParameter):
    """An uploaded patch: body (a file), level, author, comment and subdir fields."""

    columns = 1

    def __init__(self, **kwargs: Any) -> None:
        name = kwargs.pop("name", "patch")
        fields = [
            kwargs.pop(field.name, field)
            for field in (
                FileParameter("body"),
                IntParameter("level", default=1),
                StringParameter("author", default=""),
                StringParameter("comment", default=""),
                StringParameter("subdir", default="."),
            )
        ]
        super().__init__(name, fields=fields, **kwargs)
