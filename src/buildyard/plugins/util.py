"""``util``: Buildbot's grab bag of configuration helpers.

Implemented: ``BuilderConfig``, ``BuildFactory``, the result codes ``SUCCESS`` ... ``CANCELLED``,
``Results`` (their names, indexed by code), ``worst_status``, and the properties and renderables
(``Property``, ``Interpolate``, ``renderer``, ``Transform``, ``FlattenList``, ``WithProperties``,
``Secret``), ``Project`` and ``Codebase``, git's credentials (``GitCredentialOptions``,
``GitCredentialInputRenderer``), and
the web server's authentication (``NoAuth``, ``UserPasswordAuth``, ``HTPasswdAuth``,
``RemoteUserAuth``, ``CustomAuth``) and authorization (``Authz``, its endpoint and role matchers,
``fnmatchStrMatcher``, ``reStrMatcher``), ``JanitorConfigurator``,
``CommandlineUserManager``, and the Kubernetes worker's ``KubeHardcodedConfig``,
``KubeCtlProxyConfigLoader`` and ``KubeInClusterConfigLoader``. Everything else
Buildbot 4.3 registers here is a stand-in naming the feature it belongs to; ``util.repo`` and
``util.svn`` hold Buildbot's dotted names.
"""

from __future__ import annotations

from typing import Any

from buildyard.compat.results import (
    CANCELLED,
    EXCEPTION,
    FAILURE,
    RETRY,
    SKIPPED,
    SUCCESS,
    WARNINGS,
    Results,
    worst_status,
)
from buildyard.master.builds.builder import BuilderConfig
from buildyard.master.builds.factory import BuildFactory
from buildyard.master.janitor import JanitorConfigurator
from buildyard.master.logs.observer import LogLineObserver
from buildyard.master.model.gitcredentials import GitCredentialInputRenderer, GitCredentialOptions
from buildyard.master.model.projectconfig import Codebase, Project
from buildyard.master.model.properties import (
    FlattenList,
    Interpolate,
    Property,
    Secret,
    Transform,
    WithProperties,
    renderer,
)
from buildyard.master.model.revlinks import RevlinkMatch
from buildyard.master.reporters.details import URLForBuild
from buildyard.master.schedulers.changefilter import ChangeFilter, GerritChangeFilter
from buildyard.master.schedulers.forceparams import (
    AnyPropertyParameter,
    BooleanParameter,
    ChoiceStringParameter,
    CodebaseParameter,
    FileParameter,
    FixedParameter,
    IntParameter,
    NestedParameter,
    ParameterGroup,
    PatchParameter,
    StringParameter,
    TextParameter,
    UserNameParameter,
)
from buildyard.master.steps.locks import MasterLock, WorkerLock
from buildyard.master.steps.shellsequence import ShellArg
from buildyard.master.usermanager import CommandlineUserManager
from buildyard.master.workers.kubernetes import (
    KubeCtlProxyConfigLoader,
    KubeHardcodedConfig,
    KubeInClusterConfigLoader,
)
from buildyard.master.workers.libvirt import Connection
from buildyard.master.www.auth import (
    CustomAuth,
    HTPasswdAuth,
    NoAuth,
    RemoteUserAuth,
    UserPasswordAuth,
)
from buildyard.master.www.authz import (
    AnyControlEndpointMatcher,
    AnyEndpointMatcher,
    Authz,
    BranchEndpointMatcher,
    EnableSchedulerEndpointMatcher,
    ForceBuildEndpointMatcher,
    RebuildBuildEndpointMatcher,
    RolesFromDomain,
    RolesFromEmails,
    RolesFromGroups,
    RolesFromOwner,
    RolesFromUsername,
    StopBuildEndpointMatcher,
    ViewBuildsEndpointMatcher,
    fnmatchStrMatcher,
    reStrMatcher,
)
from buildyard.plugins._namespace import (
    HELPERS,
    REPORTING,
    WORKERS,
    WWW,
    Namespace,
    placeholders,
    unknown_name,
)

__all__ = [
    "CANCELLED",
    "EXCEPTION",
    "FAILURE",
    "RETRY",
    "SKIPPED",
    "SUCCESS",
    "WARNINGS",
    "AnyControlEndpointMatcher",
    "AnyEndpointMatcher",
    "AnyPropertyParameter",
    "Authz",
    "BooleanParameter",
    "BranchEndpointMatcher",
    "BuildFactory",
    "BuilderConfig",
    "ChangeFilter",
    "ChoiceStringParameter",
    "Codebase",
    "CodebaseParameter",
    "CommandlineUserManager",
    "Connection",
    "CustomAuth",
    "EnableSchedulerEndpointMatcher",
    "FileParameter",
    "FixedParameter",
    "FlattenList",
    "ForceBuildEndpointMatcher",
    "GerritChangeFilter",
    "GitCredentialInputRenderer",
    "GitCredentialOptions",
    "HTPasswdAuth",
    "IntParameter",
    "Interpolate",
    "JanitorConfigurator",
    "KubeCtlProxyConfigLoader",
    "KubeHardcodedConfig",
    "KubeInClusterConfigLoader",
    "LogLineObserver",
    "MasterLock",
    "NestedParameter",
    "NoAuth",
    "ParameterGroup",
    "PatchParameter",
    "Project",
    "Property",
    "RebuildBuildEndpointMatcher",
    "RemoteUserAuth",
    "Results",
    "RevlinkMatch",
    "RolesFromDomain",
    "RolesFromEmails",
    "RolesFromGroups",
    "RolesFromOwner",
    "RolesFromUsername",
    "Secret",
    "ShellArg",
    "StopBuildEndpointMatcher",
    "StringParameter",
    "TextParameter",
    "Transform",
    "URLForBuild",
    "UserNameParameter",
    "UserPasswordAuth",
    "ViewBuildsEndpointMatcher",
    "WithProperties",
    "WorkerLock",
    "fnmatchStrMatcher",
    "reStrMatcher",
    "renderer",
    "worst_status",
]

# Force scheduler parameters, change filters, properties and renderables, locks,
# ready-made factories, cancellers.
_PIPELINE = [
    "AnyPropertyParameter",
    "BooleanParameter",
    "ChoiceStringParameter",
    "CodebaseParameter",
    "FileParameter",
    "FixedParameter",
    "InheritBuildParameter",
    "IntParameter",
    "NestedParameter",
    "ParameterGroup",
    "PatchParameter",
    "StringParameter",
    "TextParameter",
    "UserNameParameter",
    "WorkerChoiceParameter",
    "ChangeFilter",
    "GerritChangeFilter",
    "SourceStampFilter",
    "Codebase",
    "Project",
    "FlattenList",
    "Interpolate",
    "Property",
    "Secret",
    "Transform",
    "WithProperties",
    "renderer",
    "MasterLock",
    "WorkerLock",
    "LogLineObserver",
    "ShellArg",
    "GitCredentialInputRenderer",
    "GitCredentialOptions",
    "BasicBuildFactory",
    "BasicSVN",
    "CPAN",
    "Distutils",
    "GNUAutoconf",
    "QuickBuildFactory",
    "Trial",
    "OldBuildCanceller",
    "FailingBuildsetCanceller",
    "enforceChosenWorker",
    "DbConfig",
]

# Helpers of latent workers.
_WORKERS = [
    "Connection",
    "KubeCtlProxyConfigLoader",
    "KubeHardcodedConfig",
    "KubeInClusterConfigLoader",
]

# Web authentication and authorization, avatars, revision links, users, manholes.
_WWW = [
    "AnyControlEndpointMatcher",
    "AnyEndpointMatcher",
    "EnableSchedulerEndpointMatcher",
    "ForceBuildEndpointMatcher",
    "RebuildBuildEndpointMatcher",
    "StopBuildEndpointMatcher",
    "Authz",
    "RolesFromDomain",
    "RolesFromEmails",
    "RolesFromGroups",
    "RolesFromOwner",
    "RolesFromUsername",
    "fnmatchStrMatcher",
    "reStrMatcher",
    "BitbucketAuth",
    "CustomAuth",
    "GitHubAuth",
    "GitLabAuth",
    "GoogleAuth",
    "HTPasswdAuth",
    "RemoteUserAuth",
    "UserPasswordAuth",
    "LdapUserInfo",
    "AvatarGitHub",
    "AvatarGravatar",
    "AuthorizedKeysManhole",
    "PasswordManhole",
    "TelnetManhole",
]

_REPORTING: list[str] = []

# Buildbot 4.3's names in this namespace (worst_status is buildyard's addition).
_NAMES = [*__all__, *_PIPELINE, *_WORKERS, *_WWW, *_REPORTING, "repo", "svn"]
_FEATURE = {
    **dict.fromkeys(_PIPELINE, HELPERS),
    **dict.fromkeys(_WORKERS, WORKERS),
    **dict.fromkeys(_WWW, WWW),
    **dict.fromkeys(_REPORTING, REPORTING),
}

repo = Namespace(
    "util.repo",
    placeholders(
        "util.repo",
        dict.fromkeys(["DownloadsFromChangeSource", "DownloadsFromProperties"], HELPERS),
    ),
)
svn = Namespace(
    "util.svn",
    placeholders(
        "util.svn",
        dict.fromkeys(
            ["split_file_alwaystrunk", "split_file_branches", "split_file_projects_branches"],
            HELPERS,
        ),
    ),
)

# Every name not defined above is a stand-in until buildyard implements it.
globals().update(placeholders("util", {n: _FEATURE[n] for n in _NAMES if n not in globals()}))


def __getattr__(name: str) -> Any:
    raise unknown_name("util", name, _NAMES)
