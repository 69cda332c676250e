"""Build properties, and the renderables of master.cfg that are worked out from them per build.

A build's :class:`Properties` map names to ``(value, source)``. master.cfg leaves values to be
decided per build with *renderables* (``util.Interpolate("%(prop:branch)s")``,
``util.Property("x")``, ``@util.renderer``, ...); :func:`render` turns a value holding any of
them into plain values, given the build's properties.

The rendering protocol is Buildbot's, and it is the only one: a renderable is any object with a
``getRenderingFor(props)`` method (what master.cfg code implements for Buildbot's
``IRenderable``). The method may return a plain value or an awaitable; awaitables are awaited,
and the result is rendered again (so a renderable may give back another renderable, or a list
of them). The classes here implement it as a coroutine. Lists, tuples and dicts (keys and values)
are rendered element by element; any other value is itself.

What only a build knows (its source stamps for ``src:``, its worker's info for ``worker:``, its
secrets) comes through :attr:`Properties.build`, a :class:`RenderContext` the build sets.

The master.cfg classes are :class:`~buildyard.common.config_object.ConfigObject` values: two
built from equal arguments are equal, so reconfig can tell that nothing changed. Because
``Property("x") == "y"`` is itself a renderable (Buildbot's operators), comparing two renderables
gives an object whose truth value is whether the two are the same configuration.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import re
from collections.abc import Awaitable, Callable, Iterator, KeysView, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

from buildyard.common.awaitables import deferred_compatible, resolve
from buildyard.common.config_object import ConfigObject
from buildyard.common.errors import BuildyardError, config_error

__all__ = [
    "FlattenList",
    "Interpolate",
    "JsonValue",
    "Properties",
    "Property",
    "PropertyValue",
    "RenderContext",
    "RenderError",
    "Renderable",
    "Secret",
    "SecretNotFound",
    "SecretsOnly",
    "Transform",
    "WithProperties",
    "is_renderable",
    "render",
    "renderer",
]

# Read-only containers keep the alias covariant: a list[str] is a JsonValue.
JsonValue: TypeAlias = (
    bool | int | float | str | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
)

# A property as stored: its JSON value and where it came from ("Change", "Scheduler", ...).
PropertyValue: TypeAlias = tuple[JsonValue, str]


class RenderError(BuildyardError):
    """A value could not be rendered: what it asks for needs a build, and there is none."""


class SecretNotFound(RenderError, KeyError):
    """No secret provider knows the secret. A ``KeyError`` too, as Buildbot raises."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RenderContext(Protocol):
    """What a build offers to rendering, beyond its properties."""

    def sourcestamp(self, codebase: str) -> Mapping[str, Any] | None:
        """The build's source stamp for ``codebase`` (keys ``repository``, ``branch``,
        ``revision``, ``project``, ``codebase``, ...), or None if it has none."""
        ...

    @property
    def worker_info(self) -> Mapping[str, Any]:
        """What the worker running the build told about itself (``os``, ``admin``, ...)."""
        ...

    async def secret(self, name: str) -> str | None:
        """The value of secret ``name`` from the configured providers, or None if unknown."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class SecretsOnly:
    """A :class:`RenderContext` outside any build (a change source's, a hook's, a web login's,
    a machine action's settings): the master's secrets through ``lookup``, nothing else."""

    lookup: Callable[[str], Awaitable[str | None]] | None

    def sourcestamp(self, codebase: str) -> Mapping[str, Any] | None:
        return None

    @property
    def worker_info(self) -> Mapping[str, Any]:
        return {}

    async def secret(self, name: str) -> str | None:
        return None if self.lookup is None else await self.lookup(name)


class Renderable(Protocol):
    """Buildbot's ``IRenderable``: what :func:`render` calls. The result may be awaitable."""

    def getRenderingFor(self, props: Properties, /) -> object:  # noqa: N802
        ...


def is_renderable(value: object) -> bool:
    """Whether ``value`` itself is a renderable (not whether a container holds one)."""
    return not isinstance(value, type) and callable(getattr(value, "getRenderingFor", None))


_PLAIN = (str, int, float, bool, bytes, type(None))


async def render(value: Any, props: Properties) -> Any:
    """``value`` with every renderable in it replaced by its rendering for ``props``.

    Lists, tuples and dicts are rebuilt (as plain ``list``, ``tuple``, ``dict``) with their items
    rendered in order; a renderable's result is awaited while awaitable and then rendered again.
    Anything else is returned as it is.
    """
    if isinstance(value, _PLAIN):
        return value
    if is_renderable(value):
        result = value.getRenderingFor(props)
        result = await resolve(result)
        if result is value:  # a renderable standing for itself; rendering again would not end
            return result
        return await render(result, props)
    if isinstance(value, dict):
        return {await render(k, props): await render(v, props) for k, v in value.items()}
    if isinstance(value, list):
        return [await render(v, props) for v in value]
    if isinstance(value, tuple):
        return tuple([await render(v, props) for v in value])
    return value


def _to_str(text: str | bytes) -> str:
    return text.decode() if isinstance(text, bytes) else text


class Properties:
    """The properties of one build (or of a build request, a change, ...): name to
    ``(value, source)``.

    Values are JSON (checked by :meth:`set_property`), except that a renderable may be stored
    to be rendered later, as Buildbot allows. Properties marked ``runtime`` were set while the
    build ran and are left out when a rebuild copies them
    (:meth:`update_from_properties_no_runtime`). Buildbot's camelCase methods, which master.cfg
    code calls, are aliases of the snake_case ones.
    """

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by content

    def __init__(self, **kwargs: Any) -> None:
        """``Properties(a=1)``: initial values, with source ``"TEST"`` as in Buildbot."""
        self.properties: dict[str, tuple[Any, str]] = {}
        self.runtime: set[str] = set()
        #: What the running build offers to rendering; None outside a build.
        self.build: RenderContext | None = None
        self._used_secrets: dict[str, str] = {}
        if kwargs:
            self.update(kwargs, "TEST")

    @classmethod
    def from_dict(cls, values: Mapping[str, tuple[Any, str]]) -> Properties:
        """Properties from ``{name: (value, source)}``, as :meth:`as_dict` gives them."""
        properties = cls()
        for name, (value, source) in values.items():
            properties.set_property(name, value, source)
        return properties

    def get_property(self, name: str, default: Any = None) -> Any:
        entry = self.properties.get(name)
        return default if entry is None else entry[0]

    def has_property(self, name: str) -> bool:
        return name in self.properties

    def set_property(
        self, name: str | bytes, value: Any, source: str | bytes, runtime: bool = False
    ) -> None:
        """Set ``name`` to ``value``, which must be JSON-serialisable unless it is a renderable.

        Raises :class:`TypeError` naming the property otherwise.
        """
        name = _to_str(name)
        if not is_renderable(value):
            try:
                json.dumps(value)
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"property {name!r}: {value!r} is not JSON-serialisable ({exc})"
                ) from exc
        self.properties[name] = (value, _to_str(source))
        if runtime:
            self.runtime.add(name)

    def get_property_source(self, name: str) -> str:
        """Where ``name`` came from; ``KeyError`` if it is not set."""
        return self.properties[name][1]

    def get_properties(self) -> Properties:
        return self

    def as_list(self) -> list[tuple[str, Any, str]]:
        """``[(name, value, source)]``, sorted by name."""
        return sorted((name, value, source) for name, (value, source) in self.properties.items())

    def as_dict(self) -> dict[str, tuple[Any, str]]:
        """A copy: ``{name: (value, source)}``."""
        return dict(self.properties)

    def update(self, dict: Mapping[str, Any], source: str, runtime: bool = False) -> None:
        """Set every ``name: value`` of ``dict`` with ``source``."""
        for name, value in dict.items():
            self.set_property(name, value, source, runtime=runtime)

    def update_from_properties(self, other: Properties) -> None:
        """Take every property of ``other`` (and its runtime marks)."""
        self.properties.update(other.properties)
        self.runtime.update(other.runtime)

    def update_from_properties_no_runtime(self, other: Properties) -> None:
        """Take the properties of ``other`` that were not set at runtime."""
        for name, entry in other.properties.items():
            if name not in other.runtime:
                self.properties[name] = entry

    def keys(self) -> KeysView[str]:
        return self.properties.keys()

    def get_sourcestamp(self, codebase: str = "") -> Mapping[str, Any] | None:
        """The build's source stamp for ``codebase`` (None without a build or stamp)."""
        return None if self.build is None else self.build.sourcestamp(codebase)

    @deferred_compatible
    async def render(self, value: Any) -> Any:
        """``value`` rendered for these properties (see :func:`render`)."""
        return await render(value, self)

    def use_secret(self, value: str, name: str) -> None:
        """Remember that secret ``name`` has ``value``, so :meth:`redact` hides it."""
        if value.strip():
            self._used_secrets[value] = f"<{name}>"
            use = getattr(self.build, "use_secret", None)
            if use is not None:  # the build hides it wherever it stores text
                use(value, name)

    def redact(self, text: str) -> str:
        """``text`` with the value of every secret rendered so far replaced by ``<name>``."""
        for value in sorted(self._used_secrets, key=len, reverse=True):
            text = text.replace(value, self._used_secrets[value])
        return text

    def __contains__(self, name: object) -> bool:
        return name in self.properties

    def __getitem__(self, name: str) -> Any:
        return self.properties[name][0]

    def __bool__(self) -> bool:
        return bool(self.properties)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Properties):
            return NotImplemented
        return self.properties == other.properties

    def __repr__(self) -> str:
        return f"Properties(**{ {k: v for k, (v, _) in self.properties.items()}!r})"

    # Buildbot's names, which master.cfg code calls.
    fromDict = from_dict  # noqa: N815
    getProperty = get_property  # noqa: N815
    hasProperty = has_property  # noqa: N815
    has_key = has_property
    setProperty = set_property  # noqa: N815
    getPropertySource = get_property_source  # noqa: N815
    getProperties = get_properties  # noqa: N815
    asList = as_list  # noqa: N815
    asDict = as_dict  # noqa: N815
    updateFromProperties = update_from_properties  # noqa: N815
    updateFromPropertiesNoRuntime = update_from_properties_no_runtime  # noqa: N815
    getSourceStamp = get_sourcestamp  # noqa: N815
    useSecret = use_secret  # noqa: N815
    cleanupTextFromSecrets = redact  # noqa: N815


def _context(props: Properties, what: str) -> RenderContext:
    if props.build is None:
        raise RenderError(f"{what} can only be rendered for a build, and there is none here")
    return props.build


# --- the master.cfg classes ----------------------------------------------------------------


class _RenderableConfig(ConfigObject):
    """A renderable of master.cfg. Subclasses implement :meth:`_rendering_for`."""

    @deferred_compatible
    def getRenderingFor(self, props: Properties) -> Any:  # noqa: N802
        return self._rendering_for(props)

    async def _rendering_for(self, props: Properties) -> Any:
        raise NotImplementedError


_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "in": lambda left, right: left in right,
}


class _Operators:
    """Buildbot's operators on renderables: ``Property("x") == "y"``, ``Property("n") + 1``,
    ``Property("b").in_(["main", "next"])`` are renderables of the result.

    ``in`` is a method because Python turns ``__contains__``'s result into a bool.
    """

    def __eq__(self, other: object) -> _Operator:  # type: ignore[override]
        return _Operator(self, other, "==")

    def __ne__(self, other: object) -> _Operator:  # type: ignore[override]
        return _Operator(self, other, "!=")

    def __lt__(self, other: object) -> _Operator:
        return _Operator(self, other, "<")

    def __le__(self, other: object) -> _Operator:
        return _Operator(self, other, "<=")

    def __gt__(self, other: object) -> _Operator:
        return _Operator(self, other, ">")

    def __ge__(self, other: object) -> _Operator:
        return _Operator(self, other, ">=")

    def __add__(self, other: object) -> Any:
        return _Operator(self, other, "+")

    def __sub__(self, other: object) -> _Operator:
        return _Operator(self, other, "-")

    def __mul__(self, other: object) -> _Operator:
        return _Operator(self, other, "*")

    def __truediv__(self, other: object) -> _Operator:
        return _Operator(self, other, "/")

    def __floordiv__(self, other: object) -> _Operator:
        return _Operator(self, other, "//")

    def __mod__(self, other: object) -> _Operator:
        return _Operator(self, other, "%")

    def in_(self, other: object) -> _Operator:
        return _Operator(self, other, "in")

    def __hash__(self) -> int:
        # defining __eq__ would drop the hash; the configuration's own stays
        return super().__hash__()


def _same_config(left: object, right: object) -> bool:
    """Whether two values are the same configuration (the truth of ``left == right``)."""
    if left is right:
        return True
    if type(left) is not type(right):
        return False
    if isinstance(left, _Operator):
        assert isinstance(right, _Operator)
        return left.op == right.op and bool(left.left == right.left and left.right == right.right)
    if isinstance(left, ConfigObject):
        return ConfigObject.__eq__(left, right) is True
    return bool(left == right)


class _Operator(_Operators):
    """``left <op> right``, rendered. Made by the operators of :class:`_Operators`.

    Its truth value, for ``==`` and ``!=``, says whether the two sides are the same
    configuration, so that configurations holding renderables still compare (reconfig, ``in``
    on a list). Other operators have no truth value before rendering.
    """

    __slots__ = ("left", "op", "right")

    def __init__(self, left: object, right: object, op: str) -> None:
        self.left, self.right, self.op = left, right, op

    @deferred_compatible
    def getRenderingFor(self, props: Properties) -> Any:  # noqa: N802
        return self._rendering_for(props)

    async def _rendering_for(self, props: Properties) -> Any:
        left, right = await render((self.left, self.right), props)
        return _OPERATORS[self.op](left, right)

    def __bool__(self) -> bool:
        if self.op == "==":
            return _same_config(self.left, self.right)
        if self.op == "!=":
            return not _same_config(self.left, self.right)
        raise TypeError(f"{self!r} is only known once a build renders it; it has no truth value")

    def __hash__(self) -> int:
        try:
            return hash((self.op, self.left, self.right))
        except TypeError:
            return hash(self.op)

    def __repr__(self) -> str:
        return f"{self.left!r} {self.op} {self.right!r}"


class _OperatorsConfig(_Operators, _RenderableConfig):  # type: ignore[misc]  # __eq__: see _Operators
    """A renderable of master.cfg with Buildbot's operators."""


class Property(_OperatorsConfig):
    """The value of property ``key`` (rendered too, should it be a renderable).

    ``default`` (itself rendered) stands in when the property is not set or, with
    ``defaultWhenFalse`` (the default), when its value is false.
    """

    def __init__(self, key: str, default: Any = None, defaultWhenFalse: bool = True) -> None:  # noqa: N803
        self.key = key
        self.default = default
        self.defaultWhenFalse = defaultWhenFalse

    def __repr__(self) -> str:
        shown = [repr(self.key)]
        if self.default is not None:
            shown.append(f"default={self.default!r}")
        if not self.defaultWhenFalse:
            shown.append("defaultWhenFalse=False")
        return f"Property({', '.join(shown)})"

    async def _rendering_for(self, props: Properties) -> Any:
        if self.defaultWhenFalse:
            value = await render(props.get_property(self.key), props)
            return value if value else await render(self.default, props)
        if props.has_property(self.key):
            return await render(props.get_property(self.key), props)
        return await render(self.default, props)


class Secret(_RenderableConfig):
    """The value of secret ``secret_name``, from the build's secret providers.

    Raises :class:`SecretNotFound` when no provider has it. The value is remembered on the
    properties (:meth:`Properties.redact`) so logs can hide it.
    """

    def __init__(self, secret_name: str) -> None:
        self.secret_name = secret_name

    def __repr__(self) -> str:
        return f"Secret({self.secret_name!r})"

    async def _rendering_for(self, props: Properties) -> Any:
        value = await _context(props, f"Secret({self.secret_name!r})").secret(self.secret_name)
        if value is None:
            raise SecretNotFound(f"secret {self.secret_name!r} is not found in any provider")
        props.use_secret(value, self.secret_name)
        return value


class _Renderer(_RenderableConfig):
    """What ``@renderer`` makes of a function ``fn(props, *args, **kwargs)``."""

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = dict(kwargs or {})

    def with_args(self, *args: Any, **kwargs: Any) -> _Renderer:
        """The same function with more arguments (rendered before the call)."""
        return _Renderer(self.fn, (*self.args, *args), {**self.kwargs, **kwargs})

    withArgs = with_args  # noqa: N815

    async def _rendering_for(self, props: Properties) -> Any:
        args = await render(list(self.args), props)
        kwargs = await render(self.kwargs, props)
        result = self.fn(props, *args, **kwargs)
        result = await resolve(result)
        return result  # render() renders it again

    def __repr__(self) -> str:
        if self.args or self.kwargs:
            return f"renderer({self.fn!r}, args={self.args!r}, kwargs={self.kwargs!r})"
        return f"renderer({self.fn!r})"


def renderer(fn: Callable[..., Any]) -> _Renderer:
    """Decorator: ``fn(props)`` (plain or ``async``) becomes a renderable of its result, which
    is rendered in turn. ``.withArgs(...)`` adds arguments, rendered before each call."""
    return _Renderer(fn)


class Transform(_RenderableConfig):
    """``function(*args, **kwargs)`` with the function, arguments and keywords rendered first."""

    def __init__(self, function: Any, *args: Any, **kwargs: Any) -> None:
        if not callable(function) and not is_renderable(function):
            config_error("function given to Transform neither callable nor renderable")
        self._function = function
        self._args = args
        self._kwargs = kwargs

    async def _rendering_for(self, props: Properties) -> Any:
        function = await render(self._function, props)
        args = await render(list(self._args), props)
        kwargs = await render(self._kwargs, props)
        return function(*args, **kwargs)  # an awaitable result is awaited by render()


def _flatten(items: Any, types: tuple[type, ...]) -> list[Any]:
    flat: list[Any] = []
    for item in items:
        if isinstance(item, types):
            flat.extend(_flatten(item, types))
        else:
            flat.append(item)
    return flat


class FlattenList(_OperatorsConfig):
    """``nestedlist`` rendered, then flattened: items of the ``types`` are spliced in."""

    def __init__(self, nestedlist: Any, types: type | tuple[type, ...] = (list, tuple)) -> None:
        self.nestedlist = nestedlist
        self.types = types if isinstance(types, tuple) else (types,)

    async def _rendering_for(self, props: Properties) -> Any:
        rendered = await render(self.nestedlist, props)
        if not isinstance(rendered, self.types):
            return rendered
        return _flatten(rendered, self.types)

    def __add__(self, other: object) -> FlattenList:
        more = other.nestedlist if isinstance(other, FlattenList) else other
        if not isinstance(more, list | tuple):
            return NotImplemented
        return FlattenList([*self.nestedlist, *more], self.types)


# --- %-format strings ----------------------------------------------------------------------


class _FormatError(ValueError):
    """A %-format string Python would refuse; the message says where."""


_CONVERSIONS = frozenset("diouxXeEfFgGcrsa%")


def _skip_number(fmt: str, i: int) -> tuple[int, int]:
    """Past a field width or precision at ``i``: (next index, how many ``*`` it takes)."""
    if i < len(fmt) and fmt[i] == "*":
        return i + 1, 1
    while i < len(fmt) and fmt[i].isdigit():
        i += 1
    return i, 0


def _scan(fmt: str) -> tuple[list[str], int]:
    """The ``%(key)s`` keys of a %-format string, in order, and how many positional values it
    takes (``%s``, ``%*d``, ...). Keys nest parentheses as Python's ``%`` operator does."""
    keys: list[str] = []
    positional = 0
    i, n = 0, len(fmt)
    while (i := fmt.find("%", i)) >= 0:
        start = i
        i += 1
        key: str | None = None
        if i < n and fmt[i] == "(":
            depth, i = 1, i + 1
            while i < n and depth:
                depth += {"(": 1, ")": -1}.get(fmt[i], 0)
                i += 1
            if depth:
                raise _FormatError(f"the %( at index {start} is never closed")
            key = fmt[start + 2 : i - 1]
        while i < n and fmt[i] in "-+ #0":
            i += 1
        i, stars = _skip_number(fmt, i)
        if i < n and fmt[i] == ".":
            i, precision_stars = _skip_number(fmt, i + 1)
            stars += precision_stars
        if i < n and fmt[i] in "hlL":
            i += 1
        if i >= n:
            raise _FormatError(f"the % at index {start} ends the string (write %% for a literal %)")
        conversion = fmt[i]
        i += 1
        if conversion not in _CONVERSIONS:
            raise _FormatError(
                f"unsupported conversion {fmt[start:i]!r} at index {start} "
                "(write %% for a literal %)"
            )
        positional += stars
        if key is not None:
            if key not in keys:
                keys.append(key)
        elif conversion != "%":
            positional += 1
    return keys, positional


def _check_format(name: str, fmt: object, args: int | None) -> list[str]:
    """The keys of ``fmt``, after reporting (as configuration errors) what is wrong with it:
    not a string, malformed, mixing ``%(key)s`` with positional conversions, or taking another
    number of positional values than ``args`` (None: takes none, since keys are used)."""
    if not isinstance(fmt, str):
        config_error(f"{name} needs a format string, not {fmt!r}")
        return []
    try:
        keys, positional = _scan(fmt)
        if args is None:
            if positional:
                raise _FormatError(
                    "has a positional conversion such as %s but no positional arguments "
                    "(write %% for a literal %)"
                )
            fmt % dict.fromkeys(keys, 0)  # what _scan does not check, Python does
        else:
            if keys:
                raise _FormatError(
                    f"uses %({keys[0]})s with positional arguments; use one or the other"
                )
            if positional != args:
                raise _FormatError(f"takes {positional} positional values but was given {args}")
            fmt % ((0,) * args)
    except (_FormatError, TypeError, ValueError) as exc:
        config_error(f"{name}({fmt!r}): {exc}")
        return []
    return keys


# --- Interpolate ---------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"[\w.-]*")
_SELECTORS = ("prop", "src", "kw", "worker", "secret")


class _Substitution:
    """One ``%(selector:name[:modifier])s`` of an :class:`Interpolate`.

    ``modifier`` is ``-`` (value if set, else ``otherwise``), ``~`` (value if true, else
    ``otherwise``), ``+`` (``if_set`` if set, else empty), ``?`` (``if_set`` if set, else
    ``otherwise``) or ``#?`` (``if_set`` if true, else ``otherwise``); the replacements are
    themselves interpolated.
    """

    __slots__ = ("codebase", "if_set", "modifier", "name", "otherwise", "secret", "selector")

    def __init__(
        self,
        selector: str,
        name: str,
        modifier: str,
        *,
        codebase: str = "",
        if_set: Interpolate | None = None,
        otherwise: Interpolate | None = None,
    ) -> None:
        self.selector, self.name, self.modifier = selector, name, modifier
        self.codebase = codebase
        self.if_set, self.otherwise = if_set, otherwise
        self.secret = Secret(name) if selector == "secret" else None

    def _lookup(self, props: Properties, kwargs: Mapping[str, Any]) -> tuple[bool, Any]:
        """Whether the name is set, and its (unrendered) value."""
        where: Mapping[str, Any]
        match self.selector:
            case "prop":
                return self.name in props, props.get_property(self.name)
            case "secret":
                return True, self.secret  # a secret is always "set"; a missing one is an error
            case "kw":
                where = kwargs
            case "src":
                context = _context(props, f"%(src:{self.codebase}:{self.name})s")
                where = context.sourcestamp(self.codebase) or {}
            case _:
                where = _context(props, f"%(worker:{self.name})s").worker_info
        return self.name in where, where.get(self.name)

    async def render(self, props: Properties, kwargs: Mapping[str, Any]) -> Any:
        present, value = self._lookup(props, kwargs)
        if not present:
            result = await render(self.otherwise, props)
        elif self.modifier in ("+", "?"):
            result = await render(self.if_set, props)
        elif self.modifier == "-":
            result = await render(value, props)
        else:  # "~" and "#?" look at the value's truth
            result = await render(value, props)
            if not result:
                result = await render(self.otherwise, props)
            elif self.modifier == "#?":
                result = await render(self.if_set, props)
        return "" if result is None else result


def _split_alternatives(text: str) -> tuple[str, str] | None:
    """``|yes|no`` -> ("yes", "no"): the first character is the delimiter; a delimiter inside
    parentheses (a nested ``%(...)s``) does not count."""
    if not text or text[0] == "(":
        return None
    delimiter, body = text[0], text[1:]
    depth = 0
    for i, char in enumerate(body):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return None
        if depth == 0 and char == delimiter:
            return body[:i], body[i + 1 :]
    return None


class Interpolate(_OperatorsConfig):
    """A string built from a %-format string: ``Interpolate("%(prop:branch)s-%(src::revision)s")``.

    Keys are ``selector:name[:modifier]``:

    - ``prop:<name>`` a property; ``kw:<name>`` a keyword argument of the Interpolate;
      ``src:<codebase>:<attribute>`` of the build's source stamp for that codebase (the empty
      codebase is ``src::branch``); ``worker:<name>`` the worker's info; ``secret:<name>``.
    - modifiers: ``:-text`` (the value if set, else text), ``:~text`` (the value if true, else
      text), ``:+text`` (text if set, else nothing), ``:?|yes|no`` (by being set), ``:#?|yes|no``
      (by being true). Replacements may hold ``%(...)s`` in turn. Unset with no modifier is ``""``,
      and so is a value of None.

    Or positional: ``Interpolate("%s-%s", Property("a"), "b")``. ``%%`` is a literal ``%``.
    Mistakes in the format string are configuration errors, reported when it is built.
    """

    def __init__(self, fmtstring: str, *args: Any, **kwargs: Any) -> None:
        self.fmtstring = fmtstring
        self.args = args
        self.kwargs = kwargs
        self._substitutions: dict[str, _Substitution] = {}
        if args and kwargs:
            config_error("Interpolate takes either positional or keyword substitutions, not both.")
            return
        keys = _check_format("Interpolate", fmtstring, len(args) if args else None)
        for key in keys:
            substitution = self._parse_key(key)
            if substitution is not None:
                self._substitutions[key] = substitution

    def __repr__(self) -> str:
        shown = [repr(self.fmtstring), *map(repr, self.args)]
        shown += [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"Interpolate({', '.join(shown)})"

    def _error(self, key: str, problem: str) -> None:
        config_error(f"Interpolate({self.fmtstring!r}): %({key})s: {problem}")

    def _parse_key(self, key: str) -> _Substitution | None:
        selector, colon, rest = key.partition(":")
        if not colon:
            self._error(
                key, f"no selector; write %(prop:{key})s, or use src:, kw:, worker:, secret:"
            )
            return None
        if selector not in _SELECTORS:
            self._error(key, f"unknown selector {selector!r}; use one of {', '.join(_SELECTORS)}")
            return None
        codebase = ""
        if selector == "src":
            codebase, colon, rest = rest.partition(":")
            if not colon:
                self._error(key, "src needs a codebase and an attribute: %(src:<codebase>:<attr>)s")
                return None
        name, colon, modifier = rest.partition(":")
        checked = {"prop": [name], "kw": [name], "src": [codebase, name]}.get(selector, [])
        for part in checked:
            if not _IDENTIFIER.fullmatch(part):
                self._error(key, f"{part!r} is not a valid name (letters, digits, '_', '.', '-')")
                return None
        return self._parse_modifier(key, selector, name, codebase, modifier if colon else "-")

    def _parse_modifier(
        self, key: str, selector: str, name: str, codebase: str, modifier: str
    ) -> _Substitution | None:
        def nested(text: str) -> Interpolate | None:
            return Interpolate(text, **self.kwargs) if text else None

        if not modifier:
            self._error(
                key, "nothing follows the last ':'; use :-, :~, :+, :?|yes|no or :#?|yes|no"
            )
            return None
        for prefix in ("-", "~", "+", "#?", "?"):
            if modifier.startswith(prefix):
                tail = modifier[len(prefix) :]
                break
        else:
            self._error(
                key,
                f"unknown modifier {modifier[:1]!r}; use :-, :~, :+, :?|yes|no or :#?|yes|no",
            )
            return None
        if prefix in ("-", "~"):
            if_set, otherwise = None, nested(tail)
        elif prefix == "+":
            if_set, otherwise = nested(tail), None
        else:
            parts = _split_alternatives(tail)
            if parts is None:
                self._error(
                    key,
                    f"{prefix} needs a delimiter (not '(') and two alternatives, as in "
                    f"{prefix}|yes|no",
                )
                return None
            if_set, otherwise = nested(parts[0]), nested(parts[1])
        return _Substitution(
            selector, name, prefix, codebase=codebase, if_set=if_set, otherwise=otherwise
        )

    async def _rendering_for(self, props: Properties) -> Any:
        if self.args:
            return self.fmtstring % tuple(await render(list(self.args), props))
        values = {
            key: await substitution.render(props, self.kwargs)
            for key, substitution in self._substitutions.items()
        }
        return self.fmtstring % values


# --- WithProperties ------------------------------------------------------------------------


class _PropertyMap(Mapping[str, Any]):
    """The mapping WithProperties formats with: ``name``, ``name:-default``, ``name:~default``,
    ``name:+text``, plus the values of its keyword functions; None shows as ``""``."""

    def __init__(self, props: Properties, extra: Mapping[str, Any]) -> None:
        self._props, self._extra = props, extra

    def _has(self, name: str) -> bool:
        return name in self._extra or name in self._props

    def _value(self, name: str) -> Any:
        return self._extra[name] if name in self._extra else self._props[name]

    def __getitem__(self, key: str) -> Any:
        for modifier in "-~+":
            # the last ":-" splits (Buildbot's greedy pattern); modifiers are tried in this order
            name, separator, text = key.rpartition(f":{modifier}")
            if separator:
                break
        else:
            value = self._value(key)  # KeyError for an unset property, as in Buildbot
            return "" if value is None else value
        if modifier == "-":
            value = self._value(name) if self._has(name) else text
        elif modifier == "~":
            value = self._value(name) if self._has(name) and self._value(name) else text
        else:
            value = text if self._has(name) else ""
        return "" if value is None else value

    def __iter__(self) -> Iterator[str]:
        return iter({*self._props.keys(), *self._extra})

    def __len__(self) -> int:
        return len({*self._props.keys(), *self._extra})


class WithProperties(_RenderableConfig):
    """Buildbot's older interpolation: ``WithProperties("%(branch)s")`` or
    ``WithProperties("%s-%s", "branch", "revision")``; keys may be ``name:-default``,
    ``name:~default`` or ``name:+text``. Keyword arguments are functions of the properties
    whose results fill ``%(keyword)s``. An unset property with no modifier is a ``KeyError``.
    """

    def __init__(self, fmtstring: str, *args: str, **lambda_subs: Any) -> None:
        self.fmtstring = fmtstring
        self.args = args
        self.lambda_subs = lambda_subs
        if args and lambda_subs:
            config_error(
                "WithProperties takes either positional or keyword substitutions, not both."
            )
            return
        for key, function in lambda_subs.items():
            if not callable(function):
                config_error(f'Value for lambda substitution "{key}" must be callable.')
        _check_format("WithProperties", fmtstring, len(args) if args else None)

    async def _rendering_for(self, props: Properties) -> Any:
        extra = {key: function(props) for key, function in self.lambda_subs.items()}
        values = _PropertyMap(props, extra)
        if self.args:
            return self.fmtstring % tuple(values[name] for name in self.args)
        return self.fmtstring % values
