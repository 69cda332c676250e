"""Authorization of REST requests: ``c['www']['authz'] = util.Authz(...)``, as Buildbot 4.3.

An :class:`Authz` holds ``allowRules`` (endpoint matchers, each asking for a ``role``) and
``roleMatchers`` (which give a user roles). Every REST request is checked before it does
anything: a read with the action ``"get"``, a control action with its JSON-RPC method. The
rules are tried in order; the first whose endpoint matches decides: a user with a role that
matches the rule's (``stringsMatcher(role, rule.role)``, fnmatch by default) is allowed;
otherwise the request is refused (:class:`Forbidden`) when the rule has ``defaultDeny`` (the
default), and the next rules are tried when it has not. A request no rule matches is allowed.

:class:`RolesFromOwner` gives its role for a build or build request whose buildset's ``owner``
property (what the force form's user field, or the logged-in user, put there) is the user's
email. As in Buildbot, the owner is looked up only when such a matcher is configured.

One difference: Buildbot's :class:`StopBuildEndpointMatcher` matches a build request's
``stop``, an action build requests no longer have; here it also matches their ``cancel`` (what
the UI sends), so that owners may cancel their own requests. :class:`ViewBuildsEndpointMatcher`
and :class:`BranchEndpointMatcher` are accepted and match nothing, as in Buildbot.

Reads go through :class:`~buildyard.master.data.api.DataAPI` only.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from buildyard.common.config_object import ConfigObject, is_placeholder
from buildyard.common.errors import config_error
from buildyard.master.data.api import DataAPI
from buildyard.master.data.errors import NotFound

__all__ = [
    "AnyControlEndpointMatcher",
    "AnyEndpointMatcher",
    "Authz",
    "BranchEndpointMatcher",
    "EnableSchedulerEndpointMatcher",
    "EndpointMatcherBase",
    "Forbidden",
    "ForceBuildEndpointMatcher",
    "RebuildBuildEndpointMatcher",
    "RolesFromBase",
    "RolesFromDomain",
    "RolesFromEmails",
    "RolesFromGroups",
    "RolesFromOwner",
    "RolesFromUsername",
    "StopBuildEndpointMatcher",
    "Target",
    "ViewBuildsEndpointMatcher",
    "fnmatchStrMatcher",
    "reStrMatcher",
]

StringsMatcher = Callable[[str, str], object]


def fnmatchStrMatcher(value: str, match: str) -> bool:
    """``value`` matches the glob ``match`` (``*``, ``?``, ``[...]``)."""
    return fnmatch.fnmatch(value, match)


def reStrMatcher(value: str, match: str) -> bool:
    """``value`` matches the regular expression ``match`` from its start."""
    return re.match(match, value) is not None


class Forbidden(Exception):
    """The user lacks the role a rule asks for (HTTP 403)."""

    def __init__(self, message: str, *, role: str) -> None:
        super().__init__(message)
        self.message = message
        self.role = role


def _did_you_mean(name: str, known: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _unknown_arguments(kind: str, unknown: Mapping[str, object], known: Sequence[str]) -> None:
    for name in unknown:
        config_error(f"{kind}: unknown argument {name!r}{_did_you_mean(name, known)}")


def _string_list(kind: str, what: str, value: object) -> list[str]:
    # any collection of strings (a list, a set, a dict's keys), as Buildbot only asks `in`
    if (
        isinstance(value, Collection)
        and not isinstance(value, str | bytes | Mapping)
        and all(isinstance(v, str) for v in value)
    ):
        return list(value)
    config_error(f"{kind}: {what} must be a list of strings, not {value!r}")
    return []


# -- what a rule is asked about ------------------------------------------------------------------


@dataclasses.dataclass(kw_only=True)
class Target:
    """One request to check: the REST ``path`` and ``action`` (``"get"`` for a read, else the
    JSON-RPC method) with its ``options`` (the JSON-RPC params)."""

    api: DataAPI
    path: tuple[str, ...]
    action: str
    options: Mapping[str, Any]
    # the running force schedulers by name (to find the builders a force is for)
    force_schedulers: Callable[[], Mapping[str, Any]] = dict
    _resolved: tuple[str, bool] | None = dataclasses.field(default=None, repr=False)

    def kind(self) -> tuple[str, bool] | None:
        """The resource type the path names and whether it is one entity; None if no
        endpoint has this path."""
        if self._resolved is None:
            try:
                ep = self.api.endpoint(self.path)
            except NotFound:
                return None
            self._resolved = (ep.rtype.name, ep.item is not None)
        return self._resolved

    async def entity(self) -> dict[str, Any] | None:
        try:
            found = await self.api.get(self.path)
        except NotFound:
            return None
        return found if isinstance(found, dict) else None

    async def builder_name(self, builderid: object) -> str | None:
        try:
            found = await self.api.get(("builders", str(builderid)))
        except NotFound:
            return None
        return str(found["name"]) if isinstance(found, dict) else None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Match:
    """A rule matched; for a build or build request, which (to find its owner)."""

    build: Mapping[str, Any] | None = None
    buildrequest: Mapping[str, Any] | None = None

    async def owner(self, api: DataAPI) -> str | None:
        """The ``owner`` property of the buildset of the build or request, if any."""
        request = self.buildrequest
        try:
            if request is None and self.build is not None:
                found = await api.get(("buildrequests", str(self.build["buildrequestid"])))
                request = found if isinstance(found, dict) else None
            if request is None:
                return None
            props = await api.get(("buildsets", str(request["buildsetid"]), "properties"))
        except NotFound:
            return None
        owner = props.get("owner") if isinstance(props, dict) else None
        return str(owner[0]) if isinstance(owner, list | tuple) and owner else None


# -- endpoint matchers ---------------------------------------------------------------------------


class EndpointMatcherBase(ConfigObject):
    """A rule: requests it matches need ``role`` (a pattern for ``stringsMatcher``); with
    ``defaultDeny=False`` a user without it is not refused, the next rules are tried."""

    _arguments: tuple[str, ...] = ("role", "defaultDeny")

    def __init__(self, role: object = None, defaultDeny: object = True, **unknown: Any) -> None:
        kind = type(self).__name__
        _unknown_arguments(kind, unknown, self._arguments)
        if not isinstance(role, str):
            config_error(f"{kind}: role must be a string, not {role!r}")
        if not isinstance(defaultDeny, bool):
            config_error(f"{kind}: defaultDeny must be True or False, not {defaultDeny!r}")
        self.role = role if isinstance(role, str) else ""
        self.defaultDeny = bool(defaultDeny)

    async def match(self, target: Target, strings: StringsMatcher) -> Match | None:
        return None


class AnyEndpointMatcher(EndpointMatcherBase):
    """Every request, reads included."""

    async def match(self, target: Target, strings: StringsMatcher) -> Match | None:
        return Match()


class AnyControlEndpointMatcher(EndpointMatcherBase):
    """Every control action (anything but a read), those to come included."""

    async def match(self, target: Target, strings: StringsMatcher) -> Match | None:
        return Match() if target.action.lower() != "get" else None


class _BuilderMatcher(EndpointMatcherBase):
    """A matcher restricted, with ``builder=`` (a pattern), to some builders."""

    _arguments = ("builder", "role", "defaultDeny")

    def __init__(
        self,
        builder: object = None,
        role: object = None,
        defaultDeny: object = True,
        **unknown: Any,
    ) -> None:
        super().__init__(role, defaultDeny, **unknown)
        if builder is not None and not isinstance(builder, str):
            config_error(f"{type(self).__name__}: builder must be a string, not {builder!r}")
            builder = None
        self.builder: str | None = builder

    async def _entity_match(
        self, target: Target, strings: StringsMatcher, kind: str
    ) -> Match | None:
        entity = await target.entity()
        match = Match(build=entity) if kind == "build" else Match(buildrequest=entity)
        if self.builder is None:
            return match
        if entity is None:
            return None
        name = await target.builder_name(entity["builderid"])
        return match if name is not None and strings(name, self.builder) else None


class StopBuildEndpointMatcher(_BuilderMatcher):
    """Stopping a build, cancelling a build request (of ``builder``)."""

    async def match(self, target: Target, strings: StringsMatcher) -> Match | None:
        kind = target.kind()
        if kind == ("build", True) and target.action == "stop":
            return await self._entity_match(target, strings, "build")
        if kind == ("buildrequest", True) and target.action in ("stop", "cancel"):
            return await self._entity_match(target, strings, "buildrequest")
        return None


class RebuildBuildEndpointMatcher(_BuilderMatcher):
    """Rebuilding a build (of ``builder``)."""

    async def match(self, target: Target, strings: StringsMatcher) -> Match | None:
        if target.kind() == ("build", True) and target.action == "rebuild":
            return await self._entity_match(target, strings, "build")
        return None


class ForceBuildEndpointMatcher(_BuilderMatcher):
    """Forcing builds (one of them of ``builder``) with a force scheduler."""

    async def match(self, target: Target, strings: StringsMatcher) -> Match | None:
        if target.kind() != ("forcescheduler", True) or target.action != "force":
            return None
        if self.builder is None:
            return Match()
        scheduler = target.force_schedulers().get(target.path[-1])
        if scheduler is None:
            return None
        wanted = target.options.get("builderNames")
        if wanted is not None and not (
            isinstance(wanted, list) and all(isinstance(n, str) for n in wanted)
        ):
            return Match()  # not a list of names: the rule applies (its role is needed)
        names = await scheduler.computeBuilderNames(wanted, target.options.get("builderid"))
        return Match() if any(strings(name, self.builder) for name in names) else None


class EnableSchedulerEndpointMatcher(_BuilderMatcher):
    """Enabling or disabling a scheduler (``builder`` is taken, as by Buildbot, and unused)."""

    async def match(self, target: Target, strings: StringsMatcher) -> Match | None:
        if target.kind() == ("scheduler", True) and target.action == "enable":
            return Match()
        return None


class ViewBuildsEndpointMatcher(EndpointMatcherBase):
    """Accepted as Buildbot has it (not implemented there either): matches nothing."""

    _arguments = ("branch", "project", "builder", "role", "defaultDeny")

    def __init__(
        self,
        branch: object = None,
        project: object = None,
        builder: object = None,
        role: object = None,
        defaultDeny: object = True,
        **unknown: Any,
    ) -> None:
        super().__init__(role, defaultDeny, **unknown)
        self.branch, self.project, self.builder = branch, project, builder


class BranchEndpointMatcher(EndpointMatcherBase):
    """Accepted as Buildbot has it (not implemented there either): matches nothing."""

    _arguments = ("branch", "role", "defaultDeny")

    def __init__(
        self, branch: object = None, role: object = None, defaultDeny: object = True, **unknown: Any
    ) -> None:
        super().__init__(role, defaultDeny, **unknown)
        self.branch = branch


# -- role matchers -------------------------------------------------------------------------------


class RolesFromBase(ConfigObject):
    """Gives a user roles from what authentication said of them (``username``, ``email``,
    ``groups``)."""

    def roles(self, user: Mapping[str, Any]) -> list[str]:
        return []


class RolesFromGroups(RolesFromBase):
    """Each of the user's groups that starts with ``groupPrefix``, without it, is a role."""

    def __init__(self, groupPrefix: object = "", **unknown: Any) -> None:
        _unknown_arguments("RolesFromGroups", unknown, ("groupPrefix",))
        if not isinstance(groupPrefix, str):
            config_error(f"RolesFromGroups: groupPrefix must be a string, not {groupPrefix!r}")
            groupPrefix = ""
        self.groupPrefix: str = groupPrefix

    def roles(self, user: Mapping[str, Any]) -> list[str]:
        prefix = self.groupPrefix
        groups = user.get("groups") or ()
        if not isinstance(groups, list | tuple):
            return []
        return [g[len(prefix) :] for g in groups if isinstance(g, str) and g.startswith(prefix)]


class RolesFromEmails(RolesFromBase):
    """``RolesFromEmails(admins=["a@example.com"], ...)``: roles by the user's email."""

    def __init__(self, **roles: Any) -> None:
        self.by_email: dict[str, list[str]] = {}
        for role, emails in roles.items():
            for email in _string_list(type(self).__name__, f"the list of {role!r}", emails):
                self.by_email.setdefault(email, []).append(role)

    def roles(self, user: Mapping[str, Any]) -> list[str]:
        email = user.get("email")
        return list(self.by_email.get(email, ())) if isinstance(email, str) else []


class RolesFromDomain(RolesFromEmails):
    """``RolesFromDomain(admins=["example.com"])``: roles by the domain of the user's email."""

    def roles(self, user: Mapping[str, Any]) -> list[str]:
        email = user.get("email")
        if not isinstance(email, str):
            return []
        return list(self.by_email.get(email.rpartition("@")[2], ()))


class RolesFromOwner(RolesFromBase):
    """``role`` for the builds and build requests whose owner is the user's email."""

    def __init__(self, role: object = None, **unknown: Any) -> None:
        _unknown_arguments("RolesFromOwner", unknown, ("role",))
        if not isinstance(role, str):
            config_error(f"RolesFromOwner: role must be a string, not {role!r}")
        self.role = role if isinstance(role, str) else ""

    def owner_roles(self, user: Mapping[str, Any], owner: str | None) -> list[str]:
        email = user.get("email")
        return [self.role] if owner is not None and email == owner else []


class RolesFromUsername(RolesFromBase):
    """``roles`` for each of ``usernames``."""

    def __init__(self, roles: object = None, usernames: object = None, **unknown: Any) -> None:
        _unknown_arguments("RolesFromUsername", unknown, ("roles", "usernames"))
        if isinstance(usernames, list | tuple) and None in usernames:
            config_error("RolesFromUsername: usernames cannot be None")
            usernames = [u for u in usernames if u is not None]
        self.given_roles = _string_list("RolesFromUsername", "roles", roles)
        self.usernames = _string_list("RolesFromUsername", "usernames", usernames)

    def roles(self, user: Mapping[str, Any]) -> list[str]:
        return list(self.given_roles) if user.get("username") in self.usernames else []


# -- the policy ----------------------------------------------------------------------------------


class Authz(ConfigObject):
    """``c['www']['authz']``: ``allowRules`` tried in order, ``roleMatchers`` giving roles."""

    def __init__(
        self,
        allowRules: object = None,
        roleMatchers: object = None,
        stringsMatcher: object = fnmatchStrMatcher,
        **unknown: Any,
    ) -> None:
        _unknown_arguments("Authz", unknown, ("allowRules", "roleMatchers", "stringsMatcher"))
        self.allowRules: list[EndpointMatcherBase] = self._items(
            "allowRules", allowRules, EndpointMatcherBase, "endpoint matchers"
        )
        matchers = self._items("roleMatchers", roleMatchers, RolesFromBase, "role matchers")
        self.roleMatchers: list[RolesFromBase] = [
            m for m in matchers if not isinstance(m, RolesFromOwner)
        ]
        self.ownerRoleMatchers = [m for m in matchers if isinstance(m, RolesFromOwner)]
        if not callable(stringsMatcher):
            config_error(f"Authz: stringsMatcher must be a function, not {stringsMatcher!r}")
            stringsMatcher = fnmatchStrMatcher
        self.match: StringsMatcher = stringsMatcher

    @staticmethod
    def _items(name: str, value: object, kind: type, what: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list | tuple):
            config_error(f"Authz: {name} must be a list of {what}, not {value!r}")
            return []
        found = []
        for item in value:
            if is_placeholder(item):  # reported as not implemented already
                continue
            if not isinstance(item, kind):
                config_error(
                    f"Authz: {name} must hold {what} (util.{kind.__name__}...), not {item!r}"
                )
                continue
            found.append(item)
        return found

    def getConfigDict(self) -> dict[str, Any]:
        return {}

    def roles(self, user: Mapping[str, Any]) -> set[str]:
        """The roles the (non-owner) role matchers give ``user``."""
        return {role for m in self.roleMatchers for role in m.roles(user)}

    async def assert_allowed(self, target: Target, user: Mapping[str, Any]) -> None:
        """Return if ``user`` may do ``target``; raise :class:`Forbidden` if not."""
        roles = self.roles(user)
        for rule in self.allowRules:
            match = await rule.match(target, self.match)
            if match is None:
                continue
            if self.ownerRoleMatchers:
                owner = await match.owner(target.api)
                for matcher in self.ownerRoleMatchers:
                    roles.update(matcher.owner_roles(user, owner))
            if any(self.match(role, rule.role) for role in roles):
                return
            if not rule.defaultDeny:
                continue
            where = "/".join(target.path)
            raise Forbidden(
                f"you need to have role '{rule.role}' to {target.action} {where}", role=rule.role
            )
