"""The fields of a ``ForceScheduler`` form: ``util.StringParameter``, ``util.IntParameter``, ...

A parameter is a master.cfg value that also does two jobs at force time: it describes its form
field (:meth:`BaseParameter.getSpec`, the JSON the web UI draws: spec/rest-api.md section 4) and
it turns the submitted values into a property or a source stamp
(:meth:`BaseParameter.updateFromKwargs`). Submitted values arrive as lists, keyed by the field's
``fullName`` (``<parent>_<name>`` inside a nest). A value that does not validate raises
:class:`ValidationError`; the scheduler collects every field's error (keyed by ``fullName``) and
raises them together as :class:`CollectedValidationError`.

Method and attribute names are Buildbot's, since master.cfg files subclass these classes
(``CodebaseParameter.createSourcestamp``, ``updateFromKwargs``...).
"""

from __future__ import annotations

import builtins
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

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

_RESERVED = frozenset({"owner", "builderNames", "builderid"})
# Buildbot's e-mail address rule for the user name field (reporters.mail.VALID_EMAIL_ADDR)
_EMAIL_ADDRESS = re.compile(r"(?:\S+@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)+\.?)")
# Buildbot's default c['validation'] patterns for AnyPropertyParameter
DEFAULT_PROPERTY_VALIDATION: Mapping[str, re.Pattern[str]] = {
    "property_name": re.compile(r"^[\w\.\-/~:]*$"),
    "property_value": re.compile(r"^[\w\.\-/~:]*$"),
}


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


class ValidationError(ValueError):
    """A submitted value that the field refuses."""


class CollectedValidationError(ValidationError):
    """Every field's refusal of one force request: ``errors`` maps a field's ``fullName`` to its
    message (what the REST API returns, so the UI can show each next to its field)."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("\n".join(f"{name}: {message}" for name, message in self.errors.items()))


class ValidationErrorCollector:
    """Runs field validations, keeping their errors instead of stopping at the first."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    async def collectValidationErrors(
        self, name: str | None, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """``fn(*args, **kwargs)`` (awaited if it returns an awaitable); a ValueError it
        raises is recorded under ``name`` and None returned."""
        try:
            result = fn(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
        except CollectedValidationError as err:
            self.errors.update(err.errors)
            return None
        except ValueError as err:
            self.errors[str(name or "")] = str(err)
            return None
        return result

    def maybeRaiseCollectedErrors(self) -> None:
        if self.errors:
            raise CollectedValidationError(self.errors)


class _DefaultField:
    def __repr__(self) -> str:
        return "DefaultField"


#: "the standard field" for CodebaseParameter's branch/revision/repository/project
DefaultField: Any = _DefaultField()


class BaseParameter(ConfigObject):
    """One form field. Keyword arguments beyond those named become attributes (``default``,
    ``required``, ``multiple``, ``hide``, ``maxsize``, ``tooltip``, ``size``, ...)."""

    spec_attributes: ClassVar[Sequence[str]] = (
        "name",
        "fullName",
        "label",
        "tablabel",
        "type",
        "default",
        "required",
        "multiple",
        "regex",
        "hide",
        "maxsize",
        "autopopulate",
        "tooltip",
    )
    name: str = ""
    parentName: str | None = None
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
        self.name = name
        self.label = name if label is None else label
        self.tablabel = self.label if tablabel is None else tablabel
        if regex:
            try:
                self.regex = re.compile(regex)
            except re.error as exc:
                config_error(f"parameter {name!r}: regex {regex!r} is not valid: {exc}")
        if "value" in kw:
            config_error(
                f"parameter {name!r}: use default={kw['value']!r} instead of value=... to give "
                "a default value"
            )
        for key, value in kw.items():
            setattr(self, key, value)

    @property
    def fullName(self) -> str | None:
        """The field's unique name in the form: ``<parent>_<name>`` inside a named nest (None
        for an anonymous nest at the top, as in Buildbot)."""
        if self.parentName and self.name:
            return f"{self.parentName}_{self.name}"
        return self.name or self.parentName

    def setParent(self, parent: BaseParameter | None) -> None:
        self.parentName = parent.fullName if parent else None

    def getFromKwargs(self, kwargs: Mapping[Any, Any]) -> Any:
        """The field's value from the submitted ``kwargs`` (lists of values by fullName),
        validated and converted; blank strings count as not given."""
        args = [
            a for a in kwargs.get(self.fullName, []) if not (isinstance(a, str) and not a.strip())
        ]
        for arg in args:
            if not isinstance(arg, self.submitted_types) or (
                isinstance(arg, bool) and bool not in self.submitted_types
            ):
                kinds = " or ".join(_TYPE_NAMES[t] for t in self.submitted_types)
                raise ValidationError(
                    f"{self.fullName}: must be {kinds}, not {type(arg).__name__} {arg!r:.40}"
                )
        if not args:
            if self.required:
                raise ValidationError(f"'{self.label}' needs to be specified")
            args = list(self.default) if self.multiple else [self.default]
        if self.regex is not None:
            for arg in args:
                if not self.regex.match(str(arg)):
                    raise ValidationError(
                        f"{self.label}:'{arg}' does not match pattern '{self.regex.pattern}'"
                    )
        if self.maxsize is not None:
            for arg in args:
                if len(arg) > self.maxsize:
                    raise ValidationError(f"{self.label}: is too large {len(arg)} > {self.maxsize}")
        value = self.parse_from_args(args)
        if value is None:
            raise ValidationError(f"need {self.fullName}: no default provided by config")
        return value

    def updateFromKwargs(
        self,
        properties: dict[str, Any],
        kwargs: dict[Any, Any],
        collector: ValidationErrorCollector,
        **unused: Any,
    ) -> Any:
        """Put the field's value into ``properties`` (under its name)."""
        properties[self.name] = self.getFromKwargs(kwargs)

    def parse_from_args(self, values: list[Any]) -> Any:
        if self.multiple:
            return [self.parse_from_arg(v) for v in values]
        return self.parse_from_arg(values[0])

    def parse_from_arg(self, s: Any) -> Any:
        return s

    def getSpec(self) -> dict[str, Any]:
        """The field as the web UI reads it."""
        names: list[str] = []
        for cls in reversed(type(self).__mro__):
            for attr in cls.__dict__.get("spec_attributes", ()):
                if attr not in names:
                    names.append(attr)
        spec = {attr: getattr(self, attr, None) for attr in names}
        # Buildbot's JSON encoder turns the compiled pattern into null; the UI does not use it
        if isinstance(spec.get("regex"), re.Pattern):
            spec["regex"] = None
        return spec


class FixedParameter(BaseParameter):
    """A value the user cannot change (hidden; always ``default``)."""

    type = "fixed"
    hide = True
    default: Any = ""

    def parse_from_args(self, values: list[Any]) -> Any:
        return self.default


class StringParameter(BaseParameter):
    """A one-line string."""

    submitted_types: ClassVar[tuple[builtins.type, ...]] = (str,)

    spec_attributes: ClassVar[Sequence[str]] = ("size",)
    type = "text"
    size = 10


class TextParameter(StringParameter):
    """A string that may span several lines."""

    spec_attributes = ("cols", "rows")
    type = "textarea"
    cols = 80
    rows = 20

    def value_to_text(self, value: Any) -> str:
        return str(value)


class IntParameter(StringParameter):
    """An integer."""

    type = "int"
    default: Any = 0
    submitted_types: ClassVar[tuple[builtins.type, ...]] = (str, int)

    def parse_from_arg(self, s: Any) -> Any:
        if isinstance(s, bool):
            raise ValidationError(f"{self.label}: {s!r} is not an integer")
        try:
            return int(s)
        except (TypeError, ValueError):
            raise ValidationError(f"{self.label}: '{s}' is not an integer") from None


class BooleanParameter(BaseParameter):
    """A check box: true only when the submitted value is ``True``."""

    type = "bool"

    def getFromKwargs(self, kwargs: Mapping[Any, Any]) -> Any:
        return kwargs.get(self.fullName, [self.default]) == [True]


class UserNameParameter(StringParameter):
    """Who forces the build (the ``owner``); by default an e-mail address is required."""

    spec_attributes = ("need_email",)
    type = "username"
    default: Any = ""
    size = 30
    need_email = True

    def __init__(self, name: str = "username", label: str = "Your name:", **kw: Any) -> None:
        super().__init__(name, label, **kw)

    def parse_from_arg(self, s: Any) -> Any:
        if not s and not self.required:
            return s
        if self.need_email and (not isinstance(s, str) or _EMAIL_ADDRESS.search(s) is None):
            raise ValidationError(
                f"{self.name}: please fill in email address in the form 'User <email@email.com>'"
            )
        return s


class ChoiceStringParameter(BaseParameter):
    """One of ``choices`` (any string when ``strict=False``)."""

    spec_attributes = ("choices", "strict")
    type = "list"
    choices: Sequence[str] = ()
    strict = True

    def parse_from_arg(self, s: Any) -> Any:
        if self.strict and s not in self.choices:
            raise ValidationError(
                f"'{s}' does not belong to list of available choices '{list(self.choices)}'"
            )
        return s

    def getChoices(self, master: Any, scheduler: Any, buildername: str | None) -> Sequence[str]:
        return self.choices

    def getSpec(self) -> dict[str, Any]:
        spec = super().getSpec()
        spec["choices"] = list(self.choices)
        return spec


class FileParameter(BaseParameter):
    """The content of an uploaded file (10 MB at most unless ``maxsize`` says otherwise)."""

    type = "file"
    maxsize: int | None = 1024 * 1024 * 10
    submitted_types: ClassVar[tuple[builtins.type, ...]] = (str,)


class NestedParameter(BaseParameter):
    """A group of fields. Its children's full names start with its own (unless its name is
    empty); its value is a dict of theirs, or, when its name is empty, their values directly."""

    spec_attributes = ("layout", "columns")
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
            self.columns = 2 if len([f for f in self.fields if not f.hide]) >= 4 else 1
        if self.columns > 4:
            config_error("UI only support up to 4 columns in nested parameters")
        self.setParent(None)

    def setParent(self, parent: BaseParameter | None) -> None:
        super().setParent(parent)
        for field in self.fields:
            field.setParent(self)

    async def collectChildProperties(
        self,
        kwargs: dict[Any, Any],
        properties: dict[str, Any],
        collector: ValidationErrorCollector,
        **kw: Any,
    ) -> None:
        """Collect the children's values into ``kwargs[self.fullName]`` as a dict."""
        child_properties: dict[str, Any] = {}
        for field in self.fields:
            await collector.collectValidationErrors(
                field.fullName,
                field.updateFromKwargs,
                kwargs=kwargs,
                properties=child_properties,
                collector=collector,
                **kw,
            )
        kwargs[self.fullName] = child_properties

    async def updateFromKwargs(
        self,
        properties: dict[str, Any],
        kwargs: dict[Any, Any],
        collector: ValidationErrorCollector,
        **kw: Any,
    ) -> None:
        await self.collectChildProperties(
            kwargs=kwargs, properties=properties, collector=collector, **kw
        )
        target = properties.setdefault(self.name, {}) if self.name else properties
        target.update(kwargs[self.fullName])

    def getSpec(self) -> dict[str, Any]:
        spec = super().getSpec()
        spec["fields"] = [field.getSpec() for field in self.fields]
        return spec


ParameterGroup = NestedParameter


class AnyPropertyParameter(NestedParameter):
    """A property whose name and value the user both types."""

    type = NestedParameter.type

    def __init__(self, name: str, **kw: Any) -> None:
        fields = [
            StringParameter(name="name", label="Name:"),
            StringParameter(name="value", label="Value:"),
        ]
        super().__init__(name, label="", fields=fields, **kw)

    def getFromKwargs(self, kwargs: Mapping[Any, Any]) -> Any:
        raise ValidationError("AnyPropertyParameter can only be used by properties")

    async def updateFromKwargs(
        self,
        properties: dict[str, Any],
        kwargs: dict[Any, Any],
        collector: ValidationErrorCollector,
        **kw: Any,
    ) -> None:
        await self.collectChildProperties(
            kwargs=kwargs, properties=properties, collector=collector, **kw
        )
        pname = kwargs[self.fullName].get("name", "")
        pvalue = kwargs[self.fullName].get("value", "")
        if not pname:
            return
        validation = kw.get("validation") or DEFAULT_PROPERTY_VALIDATION
        if not validation["property_name"].match(pname) or not validation["property_value"].match(
            pvalue
        ):
            raise ValidationError(f"bad property name='{pname}', value='{pvalue}'")
        properties[pname] = pvalue


class CodebaseParameter(NestedParameter):
    """The source stamp of one codebase: branch, revision, repository and project fields (a
    string makes the field fixed, None leaves it out) and optionally a ``patch``."""

    type = NestedParameter.type
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
        name = name or codebase
        if label is None and codebase:
            label = "Codebase: " + codebase
        given = {
            "branch": branch,
            "revision": revision,
            "repository": repository,
            "project": project,
        }
        fields: list[BaseParameter] = []
        for key in sorted(given):
            value = given[key]
            if value is DefaultField:
                value = StringParameter(name=key, label=key.capitalize() + ":")
            elif isinstance(value, str):
                value = FixedParameter(name=key, default=value)
            if value:
                fields.append(value)
        if patch is not None:
            if patch.name != "patch":
                config_error("patch parameter of a codebase must be named 'patch'")
            fields.append(patch)
            if self.columns is None and "columns" not in kwargs:
                self.columns = 1
        super().__init__(name=name, label=label, codebase=codebase, fields=fields, **kwargs)

    def createSourcestamp(self, properties: dict[str, Any], kwargs: dict[Any, Any]) -> Any:
        """The source stamp from the collected field values (override to compute one)."""
        return kwargs.get(self.fullName, {})

    async def updateFromKwargs(
        self,
        properties: dict[str, Any],
        kwargs: dict[Any, Any],
        collector: ValidationErrorCollector,
        **kw: Any,
    ) -> None:
        sourcestamps: dict[str, Any] = kw.pop("sourcestamps", {})
        await self.collectChildProperties(
            kwargs=kwargs,
            properties=properties,
            collector=collector,
            sourcestamps=sourcestamps,
            **kw,
        )
        ss = self.createSourcestamp(properties, kwargs)
        if inspect.isawaitable(ss):
            ss = await ss
        if ss is not None:
            ss = dict(ss)
            patch = ss.pop("patch", None)
            if patch is not None:
                for key, value in patch.items():
                    ss["patch_" + key] = value
            sourcestamps[self.codebase] = ss


class PatchParameter(NestedParameter):
    """An uploaded patch: body (a file), level, author, comment and subdir fields."""

    columns = 1

    def __init__(self, **kwargs: Any) -> None:
        name = kwargs.pop("name", "patch")
        default_fields: list[BaseParameter] = [
            FileParameter("body"),
            IntParameter("level", default=1),
            StringParameter("author", default=""),
            StringParameter("comment", default=""),
            StringParameter("subdir", default="."),
        ]
        fields = [kwargs.pop(field.name, field) for field in default_fields]
        super().__init__(name, fields=fields, **kwargs)
