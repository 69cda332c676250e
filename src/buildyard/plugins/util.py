"""``util``: Buildbot's grab bag of configuration helpers.

Implemented: ``BuilderConfig``, ``BuildFactory``, the result codes ``SUCCESS`` ... ``CANCELLED``,
``Results`` (their names, indexed by code), ``worst_status``, and the properties and renderables
(``Property``, ``Interpolate``, ``renderer``, ``Transform``, ``FlattenList``, ``WithProperties``,
``Secret``), ``Project`` and ``Codebase``, git's credentials (``GitCredentialOptions``,
``GitCredentialInputRenderer``), and
the web server's authentication (``NoAuth``, ``UserPasswordAuth``, ``HTPasswdAuth``,
``RemoteUserAuth``, ``CustomAuth``, and OAuth2's ``GitHubAuth``, ``GitLabAuth``, ``GoogleAuth``,
``BitbucketAuth``) and authorization (``Authz``, its endpoint and role matchers,
``fnmatchStrMatcher``, ``reStrMatcher``), ``JanitorConfigurator``,
``CommandlineUserManager``, the manholes (``PasswordManhole``, ``AuthorizedKeysManhole``,
``TelnetManhole``: their arguments checked, no shell opened), and the Kubernetes
worker's ``KubeHardcodedConfig``, ``KubeCtlProxyConfigLoader`` and
``KubeInClusterConfigLoader``. Everything else Buildbot 4.3 registers here is a stand-in
naming the feature it belongs to; ``util.repo`` (stand-ins) and ``util.svn``
(``SVNPoller``'s ``split_file_*`` functions) hold Buildbot's dotted names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from buildyard.master.changes import svnsplit
from buildyard.plugins._namespace import (
    HELPERS,
    REPORTING,
    WORKERS,
    WWW,
    LazyNames,
    Namespace,
    placeholders,
)

if TYPE_CHECKING:
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
    from buildyard.master.config.manhole import (
        AuthorizedKeysManhole,
        PasswordManhole,
        TelnetManhole,
    )
    from buildyard.master.janitor import JanitorConfigurator
    from buildyard.master.logs.observer import LogLineObserver
    from buildyard.master.model.gitcredentials import (
        GitCredentialInputRenderer,
        GitCredentialOptions,
    )
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
    from buildyard.master.www.oauth2 import (
        BitbucketAuth,
        GitHubAuth,
        GitLabAuth,
        GoogleAuth,
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
    "AuthorizedKeysManhole",
    "Authz",
    "BitbucketAuth",
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
    "GitHubAuth",
    "GitLabAuth",
    "GoogleAuth",
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
    "PasswordManhole",
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
    "TelnetManhole",
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
    {
        "split_file_alwaystrunk": svnsplit.split_file_alwaystrunk,
        "split_file_branches": svnsplit.split_file_branches,
        "split_file_projects_branches": svnsplit.split_file_projects_branches,
    },
)

# Each name is resolved when master.cfg first uses it (buildyard.plugins._namespace.LazyNames):
# the implemented ones from these modules, the others as stand-ins until buildyard has them.
_LAZY = LazyNames(
    "util",
    store=globals(),
    known=_NAMES,
    sources={
        "CANCELLED": "buildyard.compat.results",
        "EXCEPTION": "buildyard.compat.results",
        "FAILURE": "buildyard.compat.results",
        "RETRY": "buildyard.compat.results",
        "SKIPPED": "buildyard.compat.results",
        "SUCCESS": "buildyard.compat.results",
        "WARNINGS": "buildyard.compat.results",
        "Results": "buildyard.compat.results",
        "worst_status": "buildyard.compat.results",
        "BuilderConfig": "buildyard.master.builds.builder",
        "BuildFactory": "buildyard.master.builds.factory",
        "AuthorizedKeysManhole": "buildyard.master.config.manhole",
        "PasswordManhole": "buildyard.master.config.manhole",
        "TelnetManhole": "buildyard.master.config.manhole",
        "JanitorConfigurator": "buildyard.master.janitor",
        "LogLineObserver": "buildyard.master.logs.observer",
        "GitCredentialInputRenderer": "buildyard.master.model.gitcredentials",
        "GitCredentialOptions": "buildyard.master.model.gitcredentials",
        "Codebase": "buildyard.master.model.projectconfig",
        "Project": "buildyard.master.model.projectconfig",
        "FlattenList": "buildyard.master.model.properties",
        "Interpolate": "buildyard.master.model.properties",
        "Property": "buildyard.master.model.properties",
        "Secret": "buildyard.master.model.properties",
        "Transform": "buildyard.master.model.properties",
        "WithProperties": "buildyard.master.model.properties",
        "renderer": "buildyard.master.model.properties",
        "RevlinkMatch": "buildyard.master.model.revlinks",
        "URLForBuild": "buildyard.master.reporters.details",
        "ChangeFilter": "buildyard.master.schedulers.changefilter",
        "GerritChangeFilter": "buildyard.master.schedulers.changefilter",
        "AnyPropertyParameter": "buildyard.master.schedulers.forceparams",
        "BooleanParameter": "buildyard.master.schedulers.forceparams",
        "ChoiceStringParameter": "buildyard.master.schedulers.forceparams",
        "CodebaseParameter": "buildyard.master.schedulers.forceparams",
        "FileParameter": "buildyard.master.schedulers.forceparams",
        "FixedParameter": "buildyard.master.schedulers.forceparams",
        "IntParameter": "buildyard.master.schedulers.forceparams",
        "NestedParameter": "buildyard.master.schedulers.forceparams",
        "ParameterGroup": "buildyard.master.schedulers.forceparams",
        "PatchParameter": "buildyard.master.schedulers.forceparams",
        "StringParameter": "buildyard.master.schedulers.forceparams",
        "TextParameter": "buildyard.master.schedulers.forceparams",
        "UserNameParameter": "buildyard.master.schedulers.forceparams",
        "MasterLock": "buildyard.master.steps.locks",
        "WorkerLock": "buildyard.master.steps.locks",
        "ShellArg": "buildyard.master.steps.shellsequence",
        "CommandlineUserManager": "buildyard.master.usermanager",
        "KubeCtlProxyConfigLoader": "buildyard.master.workers.kubernetes",
        "KubeHardcodedConfig": "buildyard.master.workers.kubernetes",
        "KubeInClusterConfigLoader": "buildyard.master.workers.kubernetes",
        "Connection": "buildyard.master.workers.libvirt",
        "BitbucketAuth": "buildyard.master.www.oauth2",
        "GitHubAuth": "buildyard.master.www.oauth2",
        "GitLabAuth": "buildyard.master.www.oauth2",
        "GoogleAuth": "buildyard.master.www.oauth2",
        "CustomAuth": "buildyard.master.www.auth",
        "HTPasswdAuth": "buildyard.master.www.auth",
        "NoAuth": "buildyard.master.www.auth",
        "RemoteUserAuth": "buildyard.master.www.auth",
        "UserPasswordAuth": "buildyard.master.www.auth",
        "AnyControlEndpointMatcher": "buildyard.master.www.authz",
        "AnyEndpointMatcher": "buildyard.master.www.authz",
        "Authz": "buildyard.master.www.authz",
        "BranchEndpointMatcher": "buildyard.master.www.authz",
        "EnableSchedulerEndpointMatcher": "buildyard.master.www.authz",
        "ForceBuildEndpointMatcher": "buildyard.master.www.authz",
        "RebuildBuildEndpointMatcher": "buildyard.master.www.authz",
        "RolesFromDomain": "buildyard.master.www.authz",
        "RolesFromEmails": "buildyard.master.www.authz",
        "RolesFromGroups": "buildyard.master.www.authz",
        "RolesFromOwner": "buildyard.master.www.authz",
        "RolesFromUsername": "buildyard.master.www.authz",
        "StopBuildEndpointMatcher": "buildyard.master.www.authz",
        "ViewBuildsEndpointMatcher": "buildyard.master.www.authz",
        "fnmatchStrMatcher": "buildyard.master.www.authz",
        "reStrMatcher": "buildyard.master.www.authz",
    },
    features=_FEATURE,
)


def __getattr__(name: str) -> Any:
    return _LAZY.resolve(name)


def __dir__() -> list[str]:
    return _LAZY.names()
