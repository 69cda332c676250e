"""``util.ChangeFilter``: which changes a scheduler looks at.

Each of project, repository, branch, category and codebase can be matched by value (a string
or a list of them), by exclusion (``_not_eq``), by regular expression (``_re``, ``re.match``
semantics, a string, pattern or list), by excluded expression (``_not_re``) or by a function of
the value (``_fn``); ``property_eq``/``property_not_eq``/``property_re``/``property_not_re`` do
the same for the change's properties (a dict of property name to value(s)), and ``filter_fn``
gets the whole change. A change passes when it passes every filter given.

``branch`` differs from the others as in Buildbot: ``None`` is a value (the default branch), so
"not given" is :data:`NOT_A_BRANCH`.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from buildyard.common.config_object import ConfigObject
from buildyard.common.errors import config_error
from buildyard.master.schedulers.change import ChangeView

__all__ = ["NOT_A_BRANCH", "ChangeFilter", "GerritChangeFilter", "NotABranch", "NotABranchType"]


class NotABranchType(enum.Enum):
    """Type of :data:`NOT_A_BRANCH`: "no branch given", where ``None`` means the default
    branch. False in a boolean context, like Buildbot's ``util.NotABranch``."""

    NOT_A_BRANCH = "not a branch"

    def __bool__(self) -> bool:
        return False


NOT_A_BRANCH = NotABranchType.NOT_A_BRANCH
#: Buildbot's name for it (``buildbot.util.NotABranch``)
NotABranch = NOT_A_BRANCH

_ATTRIBUTES = ("project", "repository", "branch", "category", "codebase")


class _Kind(enum.Enum):
    EQ = "in"
    NOT_EQ = "not in"
    RE = "matches"
    NOT_RE = "does not match"


@dataclasses.dataclass(frozen=True, slots=True)
class _Filter:
    """One test of one attribute (or property) of a change."""

    prop: str
    kind: _Kind
    values: tuple[Any, ...]

    def matches(self, value: Any) -> bool:
        if self.kind is _Kind.EQ:
            return value in self.values
        if self.kind is _Kind.NOT_EQ:
            return value not in self.values
        found = isinstance(value, str) and any(p.match(value) for p in self.values)
        if self.kind is _Kind.RE:
            return found
        # a missing value (None) matches no expression, so it passes an exclusion
        return not found

    def describe(self) -> str:
        shown = [v.pattern if isinstance(v, re.Pattern) else v for v in self.values]
        return f"{self.prop} {self.kind.value} {shown}"


def _strings(keyword: str, value: object, *, none_ok: bool = False) -> tuple[Any, ...] | None:
    allowed = "a string or a list of strings" + (" (None: the default branch)" if none_ok else "")
    items = [value] if isinstance(value, str) or (none_ok and value is None) else value
    if not isinstance(items, list | tuple):
        config_error(f"ChangeFilter: {keyword} must be {allowed}, not {type(value).__name__}")
        return None
    for item in items:
        if not (isinstance(item, str) or (none_ok and item is None)):
            config_error(f"ChangeFilter: {keyword} must be {allowed}; it contains {item!r}")
            return None
    return tuple(items)


def _patterns(keyword: str, value: object) -> tuple[re.Pattern[str], ...] | None:
    items = [value] if isinstance(value, str | re.Pattern) else value
    if not isinstance(items, list | tuple):
        config_error(
            f"ChangeFilter: {keyword} must be a regular expression (string or compiled) or a "
            f"list of them, not {type(value).__name__}"
        )
        return None
    compiled: list[re.Pattern[str]] = []
    for item in items:
        if isinstance(item, re.Pattern):
            compiled.append(item)
        elif isinstance(item, str):
            try:
                compiled.append(re.compile(item))
            except re.error as exc:
                config_error(f"ChangeFilter: {keyword} {item!r} is not a regular expression: {exc}")
                return None
        else:
            config_error(f"ChangeFilter: {keyword} must hold regular expressions, not {item!r}")
            return None
    return tuple(compiled)


def _filters(
    prop: str, eq: object, not_eq: object, regex: object, not_regex: object, *, branch: bool
) -> list[_Filter]:
    """The filters of one attribute; ``branch`` says None is a value and NOT_A_BRANCH is
    "not given"."""
    absent: object = NOT_A_BRANCH if branch else None
    out: list[_Filter] = []
    for suffix, kind, value in (
        ("", _Kind.EQ, eq),
        ("_not_eq", _Kind.NOT_EQ, not_eq),
    ):
        if value is not absent:
            values = _strings(prop + suffix, value, none_ok=branch)
            if values is not None:
                out.append(_Filter(prop, kind, values))
    for suffix, kind, value in (("_re", _Kind.RE, regex), ("_not_re", _Kind.NOT_RE, not_regex)):
        if value is not None:
            patterns = _patterns(prop + suffix, value)
            if patterns is not None:
                out.append(_Filter(prop, kind, patterns))
    return out


def _property_filters(keyword: str, kind: _Kind, value: object) -> list[_Filter]:
    if value is None:
        return []
    if not isinstance(value, Mapping):
        config_error(f"ChangeFilter: {keyword} must be a dict of property name to value(s)")
        return []
    out: list[_Filter] = []
    for name, wanted in value.items():
        label = f"{keyword}[{name!r}]"
        values = (
            _patterns(label, wanted)
            if kind in (_Kind.RE, _Kind.NOT_RE)
            else _strings(label, wanted)
        )
        if values is not None:
            out.append(_Filter(str(name), kind, values))
    return out


def _callable(keyword: str, fn: object) -> Callable[[Any], object] | None:
    if fn is not None and not callable(fn):
        config_error(f"ChangeFilter: {keyword} must be a function, not {type(fn).__name__}")
        return None
    return fn


class ChangeFilter(ConfigObject):
    """Which changes to consider (all of them when no argument is given)."""

    def __init__(
        self,
        filter_fn: Callable[[Any], object] | None = None,
        project: str | Sequence[str] | None = None,
        project_not_eq: str | Sequence[str] | None = None,
        project_re: str | re.Pattern[str] | Sequence[Any] | None = None,
        project_not_re: str | re.Pattern[str] | Sequence[Any] | None = None,
        project_fn: Callable[[Any], object] | None = None,
        repository: str | Sequence[str] | None = None,
        repository_not_eq: str | Sequence[str] | None = None,
        repository_re: str | re.Pattern[str] | Sequence[Any] | None = None,
        repository_not_re: str | re.Pattern[str] | Sequence[Any] | None = None,
        repository_fn: Callable[[Any], object] | None = None,
        branch: Any = NOT_A_BRANCH,
        branch_not_eq: Any = NOT_A_BRANCH,
        branch_re: str | re.Pattern[str] | Sequence[Any] | None = None,
        branch_not_re: str | re.Pattern[str] | Sequence[Any] | None = None,
        branch_fn: Callable[[Any], object] | None = None,
        category: str | Sequence[str] | None = None,
        category_not_eq: str | Sequence[str] | None = None,
        category_re: str | re.Pattern[str] | Sequence[Any] | None = None,
        category_not_re: str | re.Pattern[str] | Sequence[Any] | None = None,
        category_fn: Callable[[Any], object] | None = None,
        codebase: str | Sequence[str] | None = None,
        codebase_not_eq: str | Sequence[str] | None = None,
        codebase_re: str | re.Pattern[str] | Sequence[Any] | None = None,
        codebase_not_re: str | re.Pattern[str] | Sequence[Any] | None = None,
        codebase_fn: Callable[[Any], object] | None = None,
        property_eq: Mapping[str, Any] | None = None,
        property_not_eq: Mapping[str, Any] | None = None,
        property_re: Mapping[str, Any] | None = None,
        property_not_re: Mapping[str, Any] | None = None,
    ) -> None:
        self.filter_fn = _callable("filter_fn", filter_fn)
        # the _fn filters, in the order Buildbot applies them
        self.attribute_fns: tuple[tuple[str, Callable[[Any], object]], ...] = tuple(
            (prop, fn)
            for prop, raw in (
                ("project", project_fn),
                ("codebase", codebase_fn),
                ("repository", repository_fn),
                ("category", category_fn),
                ("branch", branch_fn),
            )
            if (fn := _callable(f"{prop}_fn", raw)) is not None
        )
        filters = _filters(
            "project", project, project_not_eq, project_re, project_not_re, branch=False
        )
        filters += _filters(
            "repository",
            repository,
            repository_not_eq,
            repository_re,
            repository_not_re,
            branch=False,
        )
        filters += _filters("branch", branch, branch_not_eq, branch_re, branch_not_re, branch=True)
        filters += _filters(
            "category", category, category_not_eq, category_re, category_not_re, branch=False
        )
        filters += _filters(
            "codebase", codebase, codebase_not_eq, codebase_re, codebase_not_re, branch=False
        )
        self.filters: tuple[_Filter, ...] = tuple(filters)
        self.property_filters: tuple[_Filter, ...] = (
            *_property_filters("property_eq", _Kind.EQ, property_eq),
            *_property_filters("property_not_eq", _Kind.NOT_EQ, property_not_eq),
            *_property_filters("property_re", _Kind.RE, property_re),
            *_property_filters("property_not_re", _Kind.NOT_RE, property_not_re),
        )

    def filter_change(self, change: ChangeView | Mapping[str, Any]) -> bool:
        """Whether the change passes every filter. ``change`` is a :class:`ChangeView` or a
        change in its API shape (an event body)."""
        if isinstance(change, Mapping):
            change = ChangeView.from_api(change)
        if self.filter_fn is not None and not self.filter_fn(change):
            return False
        for prop, fn in self.attribute_fns:
            if not fn(getattr(change, prop)):
                return False
        for f in self.filters:
            if not f.matches(getattr(change, f.prop, "")):
                return False
        return all(
            f.matches(change.properties.getProperty(f.prop, "")) for f in self.property_filters
        )

    def describe(self) -> str:
        parts = [f"{_name(self.filter_fn)}()"] if self.filter_fn is not None else []
        parts += [f"{_name(fn)}({prop})" for prop, fn in self.attribute_fns]
        parts += [f.describe() for f in (*self.filters, *self.property_filters)]
        return " and ".join(parts)

    def __repr__(self) -> str:
        return f"<ChangeFilter on {self.describe()}>"

    @staticmethod
    def fromSchedulerConstructorArgs(
        change_filter: ChangeFilter | None = None,
        branch: Any = NOT_A_BRANCH,
        categories: str | Sequence[str] | None = None,
    ) -> ChangeFilter | None:
        """The filter of a scheduler given ``change_filter`` or the older ``branch`` and
        ``categories`` shortcuts (not both); None: no filtering."""
        if change_filter is not None:
            if branch is not NOT_A_BRANCH or categories is not None:
                config_error("cannot specify both change_filter and branch or categories")
            return change_filter
        if branch is not NOT_A_BRANCH or categories:
            return ChangeFilter(branch=branch, category=categories)
        return None


def _name(fn: object) -> str:
    return getattr(fn, "__name__", repr(fn))


class GerritChangeFilter(ChangeFilter):
    """Buildbot's ``util.GerritChangeFilter``: a :class:`ChangeFilter` whose ``branch``,
    ``branch_re`` and ``branch_fn`` look at the Gerrit branch (the ``event.change.branch``
    property: a patch set's change has the ``refs/changes/...`` ref as its branch) and which adds
    ``eventtype``, ``eventtype_re`` and ``eventtype_fn`` on the event's type (the ``event.type``
    property). Every other keyword is :class:`ChangeFilter`'s."""

    def __init__(
        self,
        branch: Any = NOT_A_BRANCH,
        branch_re: str | re.Pattern[str] | Sequence[Any] | None = None,
        branch_fn: Callable[[Any], object] | None = None,
        eventtype: str | Sequence[str] | None = None,
        eventtype_re: str | re.Pattern[str] | Sequence[Any] | None = None,
        eventtype_fn: Callable[[Any], object] | None = None,
        **kwargs: Any,
    ) -> None:
        property_eq = dict(kwargs.pop("property_eq", None) or {})
        property_re = dict(kwargs.pop("property_re", None) or {})
        if eventtype is not None:
            property_eq["event.type"] = eventtype
        if eventtype_re is not None:
            property_re["event.type"] = eventtype_re
        if branch is not NOT_A_BRANCH:
            property_eq["event.change.branch"] = branch
        if branch_re is not None:
            property_re["event.change.branch"] = branch_re
        super().__init__(property_eq=property_eq or None, property_re=property_re or None, **kwargs)
        self.eventtype_fn = _callable("eventtype_fn", eventtype_fn)
        self.gerrit_branch_fn = _callable("branch_fn", branch_fn)

    def filter_change(self, change: ChangeView | Mapping[str, Any]) -> bool:
        if isinstance(change, Mapping):
            change = ChangeView.from_api(change)
        for prop, fn in (
            ("event.type", self.eventtype_fn),
            ("event.change.branch", self.gerrit_branch_fn),
        ):
            if fn is not None and not fn(change.properties.getProperty(prop, "")):
                return False
        return super().filter_change(change)

    def describe(self) -> str:
        parts = [super().describe()] if super().describe() else []
        for what, fn in (("eventtype", self.eventtype_fn), ("branch", self.gerrit_branch_fn)):
            if fn is not None:
                parts.append(f"{_name(fn)}({what})")
        return " and ".join(parts)

    def __repr__(self) -> str:
        return f"<GerritChangeFilter on {self.describe()}>"
