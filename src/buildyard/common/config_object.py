"""The base of master.cfg's vocabulary, and the stand-ins for the words not implemented yet.

A :class:`ConfigObject` remembers where master.cfg built it (``defined_at``, for error messages
that point at the user's line) and the arguments it was built with. Two objects built from equal
arguments are equal, which is what reconfig needs: a builder whose configuration did not change
keeps running.

:func:`not_implemented` makes a stand-in class for a Buildbot class that buildyard has not
built yet. Building one reports ``"steps.P4 is not implemented yet (steps)"``
through :func:`~buildyard.common.errors.config_error`, once per name per load, and gives back an
inert object, so loading goes on and every other mistake is found in the same run.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from buildyard.common.errors import Location, caller_location, config_error, first_report

__all__ = [
    "ConfigObject",
    "is_placeholder",
    "not_implemented",
    "placeholder_name",
    "report_if_placeholder",
]


@functools.lru_cache(maxsize=512)
def _signature(cls: type) -> inspect.Signature:
    """The constructor's signature; computed once per class (configs build thousands)."""
    return inspect.signature(cls.__init__)  # type: ignore[misc]  # the class's own


_Plan = tuple[tuple[str, ...], tuple[str, ...], frozenset[str], dict[str, object]]


@functools.lru_cache(maxsize=512)
def _plan(cls: type) -> _Plan | None:
    """For a constructor with only named parameters (no ``*args``, ``**kwargs`` or
    positional-only ones): its positional names, all names, the names that need a value, and
    the defaults. None for other constructors, which :func:`_bind` binds with ``inspect``."""
    try:
        parameters = list(_signature(cls).parameters.values())[1:]
    except (TypeError, ValueError):
        return None
    kinds = {p.kind for p in parameters}
    if kinds - {inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY}:
        return None
    return (
        tuple(p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD),
        tuple(p.name for p in parameters),
        frozenset(p.name for p in parameters if p.default is inspect.Parameter.empty),
        {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty},
    )


def _bind(cls: type, args: tuple[object, ...], kwargs: dict[str, object]) -> dict[str, object]:
    """The constructor arguments by parameter name, defaults filled in, so that ``Worker("w",
    "p")`` and ``Worker(name="w", password="p", max_builds=None)`` record the same thing.

    The common case (named parameters, arguments that fit) is bound directly, as
    ``Signature.bind`` would, without the arguments that are their parameter's default object,
    because a configuration with thousands of builders builds thousands of these; anything else
    goes through ``inspect``, defaults filled in."""
    plan = _plan(cls)
    if plan is not None:
        positional, names, required, defaults = plan
        if len(args) <= len(positional):
            given = kwargs  # by keywords only (the common case): no copy
            if args:
                given = dict(zip(positional, args, strict=False))
                given.update(kwargs)
            if (
                len(given) == len(args) + len(kwargs)  # no name given twice
                and kwargs.keys() <= set(names)
                and required <= given.keys()
            ):
                # the defaults left out: equal either way, and 10,000 builders hold less
                kept = {
                    n: given[n]
                    for n in names
                    if n in given and (n not in defaults or given[n] is not defaults[n])
                }
                if not args and list(kept) == list(kwargs):
                    # the keywords as given (in the signature's order): kept once, as
                    # these and as the raw arguments
                    return kwargs
                return kept
    try:
        signature = _signature(cls)
        bound = signature.bind(None, *args, **kwargs)
    except (TypeError, ValueError):
        # The constructor itself will refuse these arguments with a better message.
        return {"args": args, "kwargs": kwargs}
    bound.apply_defaults()
    arguments = dict(bound.arguments)
    arguments.pop(next(iter(signature.parameters)))  # self
    return arguments


def _freeze(value: object) -> object:
    if isinstance(value, Mapping):
        return frozenset((k, _freeze(v)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(_freeze(v) for v in value)
    return value


def _takes_no_arguments(cls: type) -> bool:
    """Whether ``cls`` can be built without arguments, as :func:`_bind` binds them."""
    plan = _plan(cls)
    return plan is not None and not plan[2]


# the arguments of every object built without any: read, never mutated
_NO_ARGUMENTS: tuple[tuple[object, ...], dict[str, object]] = ((), {})


class ConfigObject:
    """A value of the configuration vocabulary, as master.cfg built it.

    Subclasses validate in ``__init__`` with :func:`~buildyard.common.errors.config_error` and
    keep what they need as attributes. Equality compares the type and the constructor arguments
    (override :meth:`_compare_key` when later mutation matters, as for a factory's steps).
    """

    #: Constructor arguments that ``repr`` must not show.
    _secret_arguments: ClassVar[frozenset[str]] = frozenset()

    defined_at: Location | None
    _config_arguments: dict[str, object]
    _raw_arguments: tuple[tuple[object, ...], dict[str, object]]

    def __new__(cls, *args: object, **kwargs: object) -> Self:
        self = super().__new__(cls)
        self.defined_at = caller_location()
        if not args and not kwargs and _takes_no_arguments(cls):
            # BuildFactory(): one shared record for all of them (neither is ever mutated)
            self._config_arguments = _NO_ARGUMENTS[1]
            self._raw_arguments = _NO_ARGUMENTS
            return self
        self._config_arguments = _bind(cls, args, kwargs)
        # as given, to build an equal object again (a build step's copy for each build)
        self._raw_arguments = (args, kwargs)  # ``**kwargs`` is a new dict of its own
        return self

    def _compare_key(self) -> object:
        return self._config_arguments

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, ConfigObject)
        return bool(self._compare_key() == other._compare_key())

    def __hash__(self) -> int:
        try:
            return hash((type(self).__qualname__, _freeze(self._compare_key())))
        except TypeError:
            return hash(type(self).__qualname__)

    def __repr__(self) -> str:
        parameters: Mapping[str, inspect.Parameter]
        try:
            parameters = inspect.signature(type(self).__init__).parameters
        except (TypeError, ValueError):  # pragma: no cover - every class here has a signature
            parameters = {}
        shown: list[str] = []
        for name, value in self._config_arguments.items():
            parameter = parameters.get(name)
            kind = parameter.kind if parameter is not None else None
            if kind is inspect.Parameter.VAR_POSITIONAL and isinstance(value, tuple):
                shown.extend(repr(v) for v in value)
            elif kind is inspect.Parameter.VAR_KEYWORD and isinstance(value, dict):
                shown.extend(self._show(k, v) for k, v in value.items())
            elif parameter is None or value is not parameter.default:
                shown.append(self._show(name, value))
        return f"{type(self).__qualname__}({', '.join(shown)})"

    def _show(self, name: str, value: object) -> str:
        return f"{name}={'<hidden>' if name in self._secret_arguments else repr(value)}"


class _Placeholder(ConfigObject):
    """A Buildbot class buildyard has not implemented yet (see :func:`not_implemented`).

    Instances are inert: any attribute is the object itself and calling it gives it back, so
    ``factory.addStep(steps.Git(...))`` or ``util.MasterLock("l").access("exclusive")`` keep
    loading while the mistake is reported.
    """

    _placeholder_name: ClassVar[str]
    _placeholder_feature: ClassVar[str]

    def __new__(cls, *args: object, **kwargs: object) -> Self:
        # Reported here rather than in __init__ so that a master.cfg subclass whose __init__
        # does not call super().__init__() is reported too.
        cls._report()
        return super().__new__(cls, *args, **kwargs)

    @classmethod
    def _report(cls) -> None:
        name = cls._placeholder_name
        if first_report(f"not-implemented:{name}"):
            config_error(f"{name} is not implemented yet ({cls._placeholder_feature})")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self


def not_implemented(qualified_name: str, feature: str) -> type[ConfigObject]:
    """A stand-in class for ``qualified_name`` (e.g. ``"steps.P4"``), part of
    ``feature`` (what a user would look for, e.g. ``"reporters"``), which buildyard does not have
    yet. Building it reports a configuration error, once per name per load."""
    short = qualified_name.rpartition(".")[2]
    return type(
        short,
        (_Placeholder,),
        {
            "_placeholder_name": qualified_name,
            "_placeholder_feature": feature,
            "__qualname__": short,
            "__doc__": f"{qualified_name}: not implemented yet ({feature}).",
        },
    )


def is_placeholder(value: object) -> bool:
    """Whether ``value`` is a stand-in class or an instance of one."""
    if isinstance(value, type):
        return issubclass(value, _Placeholder)
    return isinstance(value, _Placeholder)


def report_if_placeholder(value: object) -> None:
    """Report a stand-in *class* handed over without being called (e.g.
    ``canStartBuild=util.enforceChosenWorker``), as building it would have."""
    if isinstance(value, type) and issubclass(value, _Placeholder):
        value._report()


def placeholder_name(value: object) -> str | None:
    """The ``name`` a stand-in instance was given (keyword, else first positional), if a string.

    Lets cross-references (a builder naming a latent worker) work before the class exists.
    """
    if not isinstance(value, _Placeholder):
        return None
    arguments = value._config_arguments
    kwargs, args = arguments.get("kwargs"), arguments.get("args")
    name = arguments.get("name")  # a master.cfg subclass with its own signature
    if name is None and isinstance(kwargs, dict):
        name = kwargs.get("name")
    if name is None and isinstance(args, tuple) and args:
        name = args[0]
    return name if isinstance(name, str) else None
