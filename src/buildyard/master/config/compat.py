"""``import buildbot...`` while master.cfg loads: Buildbot's module paths answered by buildyard.

:func:`buildbot_imports` installs, for the duration of one load, a ``sys.meta_path`` finder that
knows an explicit table of Buildbot 4 module paths (:data:`MODULES`). Each is built fresh for
the load as a module holding buildyard's objects under Buildbot's names (mostly the plugin
namespaces of :mod:`buildyard.plugins`), so ``from buildbot.steps.shell import ShellCommand``
and ``steps.ShellCommand`` are the same class. A path outside the table fails with
:class:`UnsupportedBuildbotModule`; a Buildbot 0.8 path (``buildbot.status``,
``buildbot.buildslave``, ...) with :class:`Buildbot08Module`, which says what replaced it.
Afterwards ``sys.modules`` holds no ``buildbot`` entry of ours; one there before is restored.
The two ``twisted.cred`` modules that Buildbot's manual uses for ``change_hook_auth``
(:data:`TWISTED_MODULES`) are answered the same way. Any other ``twisted`` import is users'
Twisted-style code: it turns on the optional ``buildyard[twisted]`` adapter
(:mod:`buildyard.compat.twisted`), or fails naming that extra when Twisted is not installed.
Without Twisted, the two Twisted imports real master.cfg files use most,
``twisted.internet.defer`` and ``twisted.python.log`` (:data:`TWISTED_STAND_INS`), are answered
by small asyncio stand-ins (:mod:`buildyard.compat.twisted_style`) rather than refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Iterator, Sequence
from typing import Any

from buildyard.compat import twisted as twisted_adapter

__all__ = [
    "MODULES",
    "Buildbot08Module",
    "BuildbotImportError",
    "UnsupportedBuildbotModule",
    "buildbot_imports",
]


class BuildbotImportError(ImportError):
    """A ``buildbot.*`` import that buildyard cannot answer."""


class UnsupportedBuildbotModule(BuildbotImportError):
    """A Buildbot module path outside buildyard's table."""


class Buildbot08Module(BuildbotImportError):
    """A module of Buildbot 0.8, removed from Buildbot long ago."""


_PLUGINS = "buildyard.plugins"
_STEPS = "buildyard.plugins.steps"
_SCHEDULERS = "buildyard.plugins.schedulers"
_CHANGES = "buildyard.plugins.changes"
_WORKER = "buildyard.plugins.worker"
_REPORTERS = "buildyard.plugins.reporters"
_SECRETS = "buildyard.plugins.secrets"
_UTIL = "buildyard.plugins.util"
_EXTRAS = "buildyard.compat.extras"
_MACHINES = "buildyard.master.workers.machines"
_LATENT = "buildyard.master.workers.config"
_FORCEPARAMS = "buildyard.master.schedulers.forceparams"
_CHANGEFILTER = "buildyard.master.schedulers.changefilter"
_PROPERTIES = "buildyard.master.model.properties"
_HOOKS = "buildyard.master.changes.hooks"
_WEBHOOKS = "buildyard.plugins.webhooks"
_CREDENTIALS = "buildyard.master.changes.hooks.credentials"
_TWISTED_STYLE = "buildyard.compat.twisted_style"
_CHAT = "buildyard.master.reporters.chat"
_IRC = "buildyard.master.reporters.irc"
_TELEGRAM = "buildyard.master.reporters.telegram"


@dataclasses.dataclass(frozen=True, slots=True)
class _Module:
    """A Buildbot module: ``names`` looked up, in order, in the ``sources`` (module paths, or
    ``"module:attribute"`` for a namespace object such as ``util.svn``)."""

    sources: tuple[str, ...] = ()
    names: tuple[str, ...] = ()


def _m(sources: str | Sequence[str], names: str = "") -> _Module:
    return _Module((sources,) if isinstance(sources, str) else tuple(sources), tuple(names.split()))


_STEP_AND_EXTRAS = (_STEPS, _EXTRAS)
_PARAMETERS = (
    "AnyPropertyParameter BooleanParameter ChoiceStringParameter CodebaseParameter FileParameter "
    "FixedParameter InheritBuildParameter IntParameter NestedParameter ParameterGroup "
    "PatchParameter StringParameter TextParameter UserNameParameter WorkerChoiceParameter"
)
_VSTUDIO = (
    "MsBuild MsBuild12 MsBuild14 MsBuild141 MsBuild15 MsBuild16 MsBuild17 MsBuild4 VC10 VC11 "
    "VC12 VC14 VC141 VC6 VC7 VC8 VC9 VCExpress9 VS2003 VS2005 VS2008 VS2010 VS2012 VS2013 "
    "VS2015 VS2017 VS2019 VS2022"
)

#: Every Buildbot module path that master.cfg may import, and what it holds. Parent packages
#: (``buildbot``, ``buildbot.steps``, ...) are added by :func:`_with_parents`.
MODULES: dict[str, _Module] = {
    "buildbot.plugins": _m(
        _PLUGINS, "changes reporters schedulers secrets steps util webhooks worker"
    ),
    # configuration
    "buildbot.config": _m((_UTIL, _EXTRAS), "BuilderConfig ConfigErrors error"),
    "buildbot.config.builder": _m(_UTIL, "BuilderConfig"),
    "buildbot.config.errors": _m(_EXTRAS, "ConfigErrors error"),
    "buildbot.configurators.janitor": _m(
        "buildyard.master.janitor",
        "JanitorConfigurator LogChunksJanitor BuildDataJanitor JANITOR_NAME",
    ),
    "buildbot.locks": _m(_UTIL, "MasterLock WorkerLock"),
    "buildbot.manhole": _m(_UTIL, "AuthorizedKeysManhole PasswordManhole TelnetManhole"),
    "buildbot.revlinks": _m(
        "buildyard.master.model.revlinks",
        "BitbucketRevlink GithubRevlink GitwebMatch RevlinkMatch RevlinkMultiplexer "
        "SourceforgeGitRevlink SourceforgeGitRevlink_AlluraPlatform default_revlink_matcher",
    ),
    "buildbot.machine.base": _m(_MACHINES, "Machine"),
    "buildbot.machine.latent": _m(_MACHINES, "AbstractLatentMachine States"),
    "buildbot.machine.generic": _m(
        _MACHINES,
        "GenericLatentMachine HttpAction LocalWOLAction LocalWakeAction RemoteSshSuspendAction "
        "RemoteSshWOLAction RemoteSshWakeAction",
    ),
    # process
    "buildbot.process.results": _m(
        "buildyard.compat.results",
        "SUCCESS WARNINGS FAILURE SKIPPED EXCEPTION RETRY CANCELLED ALL_RESULTS Results "
        "MultipleResults statusToString worst_status",
    ),
    "buildbot.process.factory": _m(
        _UTIL,
        "BuildFactory BasicBuildFactory BasicSVN CPAN Distutils GNUAutoconf QuickBuildFactory "
        "Trial",
    ),
    "buildbot.process.properties": _m(
        _PROPERTIES,
        "FlattenList Interpolate Properties Property Secret Transform WithProperties renderer",
    ),
    "buildbot.process.buildstep": _m(
        _STEP_AND_EXTRAS, "BuildStep BuildStepFailed CommandMixin ShellMixin"
    ),
    "buildbot.process.remotecommand": _m(_EXTRAS, "RemoteCommand RemoteShellCommand"),
    "buildbot.process.logobserver": _m(
        (_UTIL, _EXTRAS), "BufferLogObserver LineConsumerLogObserver LogLineObserver LogObserver"
    ),
    "buildbot.process.codebase": _m(_UTIL, "Codebase"),
    "buildbot.process.project": _m(_UTIL, "Project"),
    "buildbot.process.users.manual": _m(_UTIL, "CommandlineUserManager"),
    # workers
    "buildbot.worker": _m((_WORKER, _EXTRAS), "AbstractLatentWorker AbstractWorker Worker"),
    "buildbot.worker.base": _m((_WORKER, _EXTRAS), "AbstractWorker Worker"),
    "buildbot.worker.latent": _m((_EXTRAS, _LATENT), "AbstractLatentWorker LocalLatentWorker"),
    "buildbot.worker.local": _m(_WORKER, "LocalWorker"),
    "buildbot.worker.docker": _m(_WORKER, "DockerLatentWorker"),
    "buildbot.worker.ec2": _m(_WORKER, "EC2LatentWorker"),
    "buildbot.worker.kubernetes": _m(_WORKER, "KubeLatentWorker"),
    "buildbot.util.kubeclientservice": _m(
        _UTIL, "KubeCtlProxyConfigLoader KubeHardcodedConfig KubeInClusterConfigLoader"
    ),
    "buildbot.worker.libvirt": _m((_WORKER, _UTIL), "Connection LibVirtWorker"),
    "buildbot.worker.openstack": _m(_WORKER, "OpenStackLatentWorker"),
    # change sources
    "buildbot.changes.base": _m(
        _EXTRAS, "ChangeSource PollingChangeSource ReconfigurablePollingChangeSource"
    ),
    "buildbot.changes.filter": _m(_UTIL, "ChangeFilter"),
    "buildbot.changes.gitpoller": _m(_CHANGES, "GitPoller"),
    "buildbot.changes.svnpoller": _m(
        (_CHANGES, f"{_UTIL}:svn"),
        "SVNPoller split_file_alwaystrunk split_file_branches split_file_projects_branches",
    ),
    "buildbot.changes.hgpoller": _m(_CHANGES, "HgPoller"),
    "buildbot.changes.p4poller": _m(_CHANGES, "P4Source"),
    "buildbot.changes.pb": _m(_CHANGES, "PBChangeSource"),
    "buildbot.changes.github": _m(_CHANGES, "GitHubPullrequestPoller"),
    "buildbot.changes.bitbucket": _m(_CHANGES, "BitbucketPullrequestPoller"),
    "buildbot.changes.gerritchangesource": _m(
        (_CHANGES, _UTIL), "GerritChangeFilter GerritChangeSource GerritEventLogPoller"
    ),
    "buildbot.changes.mail": _m(
        _CHANGES,
        "BzrLaunchpadEmailMaildirSource CVSMaildirSource MaildirSource SVNCommitEmailMaildirSource",
    ),
    # schedulers
    "buildbot.scheduler": _m(
        (_SCHEDULERS, _EXTRAS),
        "AnyBranchScheduler Dependent Nightly Periodic Scheduler Triggerable Try_Jobdir "
        "Try_Userpass",
    ),
    "buildbot.schedulers.base": _m(_EXTRAS, "BaseScheduler"),
    "buildbot.schedulers.basic": _m(
        (_SCHEDULERS, _EXTRAS), "AnyBranchScheduler Scheduler SingleBranchScheduler"
    ),
    "buildbot.schedulers.forcesched": _m(
        (_SCHEDULERS, _UTIL, _FORCEPARAMS),
        f"ForceScheduler ValidationError CollectedValidationError ValidationErrorCollector "
        f"BaseParameter DefaultField {_PARAMETERS}",
    ),
    "buildbot.schedulers.timed": _m(_SCHEDULERS, "Nightly NightlyTriggerable Periodic"),
    "buildbot.schedulers.triggerable": _m(_SCHEDULERS, "Triggerable"),
    "buildbot.schedulers.dependent": _m(_SCHEDULERS, "Dependent"),
    "buildbot.schedulers.trysched": _m(_SCHEDULERS, "Try_Jobdir Try_Userpass"),
    "buildbot.schedulers.filter": _m(_UTIL, "ChangeFilter"),
    "buildbot.schedulers.canceller": _m(_UTIL, "OldBuildCanceller"),
    "buildbot.schedulers.canceller_buildset": _m(_UTIL, "FailingBuildsetCanceller"),
    # steps
    "buildbot.steps.shell": _m(
        _STEPS,
        "Compile Configure PerlModuleTest SetPropertyFromCommand ShellCommand Test TreeSize "
        "WarningCountingShellCommand",
    ),
    "buildbot.steps.shellsequence": _m((_STEPS, _UTIL), "ShellArg ShellSequence"),
    "buildbot.steps.master": _m(
        _STEPS, "Assert LogRenderable MasterShellCommand SetProperties SetProperty"
    ),
    "buildbot.steps.worker": _m(
        _STEP_AND_EXTRAS,
        "CompositeStepMixin CopyDirectory FileExists MakeDirectory RemoveDirectory "
        "SetPropertiesFromEnv",
    ),
    "buildbot.steps.transfer": _m(
        _STEPS,
        "DirectoryUpload FileDownload FileUpload JSONPropertiesDownload JSONStringDownload "
        "MultipleFileUpload StringDownload",
    ),
    "buildbot.steps.trigger": _m(_STEPS, "Trigger"),
    "buildbot.steps.python": _m(_STEPS, "BuildEPYDoc PyFlakes PyLint Sphinx"),
    "buildbot.steps.python_twisted": _m(_STEPS, "HLint RemovePYCs Trial"),
    "buildbot.steps.http": _m(_STEPS, "DELETE GET HEAD HTTPStep OPTIONS POST PUT"),
    "buildbot.steps.cmake": _m(_STEPS, "CMake"),
    "buildbot.steps.subunit": _m(_STEPS, "SubunitShellCommand"),
    "buildbot.steps.gitdiffinfo": _m(_STEPS, "GitDiffInfo"),
    "buildbot.steps.cppcheck": _m(_STEPS, "Cppcheck"),
    "buildbot.steps.maxq": _m(_STEPS, "MaxQ"),
    "buildbot.steps.mswin": _m(_STEPS, "Robocopy"),
    "buildbot.steps.vstudio": _m(
        "buildyard.master.steps.vstudio", _VSTUDIO + " MSLogLineObserver VisualStudio"
    ),
    "buildbot.steps.source.base": _m(_EXTRAS, "Source"),
    "buildbot.steps.source.git": _m(_STEPS, "Git GitCommit GitPush GitTag"),
    "buildbot.steps.source.github": _m(_STEPS, "GitHub"),
    "buildbot.steps.source.gitlab": _m(_STEPS, "GitLab"),
    "buildbot.steps.source.gerrit": _m(_STEPS, "Gerrit"),
    "buildbot.steps.source.svn": _m(_STEPS, "SVN"),
    "buildbot.steps.source.mercurial": _m(_STEPS, "Mercurial"),
    "buildbot.steps.source.p4": _m(_STEPS, "P4"),
    "buildbot.steps.source.repo": _m(_STEPS, "Repo"),
    "buildbot.steps.source.bzr": _m(_STEPS, "Bzr"),
    "buildbot.steps.source.cvs": _m(_STEPS, "CVS"),
    "buildbot.steps.source.darcs": _m(_STEPS, "Darcs"),
    "buildbot.steps.source.mtn": _m(_STEPS, "Monotone"),
    # reporters
    "buildbot.reporters.base": _m(_EXTRAS, "ReporterBase"),
    "buildbot.reporters.mail": _m(_REPORTERS, "MailNotifier"),
    "buildbot.reporters.github": _m(_REPORTERS, "GitHubCommentPush GitHubStatusPush"),
    "buildbot.reporters.gitlab": _m(_REPORTERS, "GitLabStatusPush"),
    "buildbot.reporters.http": _m(_REPORTERS, "HttpStatusPush"),
    # the chat bots' classes, which sites subclass to add their own commands
    "buildbot.reporters.irc": _m(
        (_REPORTERS, _IRC, _CHAT), "IRC IRCChannel IRCContact IrcStatusBot UsageError"
    ),
    "buildbot.reporters.telegram": _m(
        (_REPORTERS, _TELEGRAM),
        "TelegramBot TelegramChannel TelegramContact TelegramPollingBot TelegramStatusBot "
        "TelegramWebhookBot",
    ),
    "buildbot.reporters.words": _m(_CHAT, "Channel Contact StatusBot UsageError dangerousCommand"),
    "buildbot.reporters.zulip": _m(_REPORTERS, "ZulipStatusPush"),
    "buildbot.reporters.pushover": _m(_REPORTERS, "PushoverNotifier"),
    "buildbot.reporters.pushjet": _m(_REPORTERS, "PushjetNotifier"),
    "buildbot.reporters.gerrit": _m(
        (_REPORTERS, "buildyard.master.reporters.gerrit"),
        "GerritStatusPush GerritBuildSetStatusGenerator GerritBuildStartStatusGenerator "
        "GerritBuildEndStatusGenerator makeReviewResult defaultReviewCB defaultSummaryCB "
        "GERRIT_LABEL_VERIFIED GERRIT_LABEL_REVIEWED DEFAULT_REVIEW DEFAULT_SUMMARY",
    ),
    "buildbot.reporters.gerrit_verify_status": _m(_REPORTERS, "GerritVerifyStatusPush"),
    "buildbot.reporters.bitbucket": _m(_REPORTERS, "BitbucketStatusPush"),
    "buildbot.reporters.bitbucketserver": _m(
        _REPORTERS,
        "BitbucketServerCoreAPIStatusPush BitbucketServerPRCommentPush BitbucketServerStatusPush",
    ),
    "buildbot.reporters.message": _m(
        _REPORTERS,
        "MessageFormatter MessageFormatterEmpty MessageFormatterFunction "
        "MessageFormatterFunctionRaw MessageFormatterMissingWorker MessageFormatterRenderable",
    ),
    "buildbot.reporters.generators.build": _m(
        _REPORTERS, "BuildStartEndStatusGenerator BuildStatusGenerator"
    ),
    "buildbot.reporters.generators.buildset": _m(
        _REPORTERS, "BuildSetCombinedStatusGenerator BuildSetStatusGenerator"
    ),
    "buildbot.reporters.generators.buildrequest": _m(_REPORTERS, "BuildRequestGenerator"),
    "buildbot.reporters.generators.worker": _m(_REPORTERS, "WorkerMissingGenerator"),
    "buildbot.reporters.utils": _m(_UTIL, "URLForBuild"),
    # secrets
    "buildbot.secrets.providers.file": _m(_SECRETS, "SecretInAFile"),
    "buildbot.secrets.providers.passwordstore": _m(_SECRETS, "SecretInPass"),
    "buildbot.secrets.providers.vault_hvac": _m(
        _SECRETS,
        "HashiCorpVaultKvSecretProvider VaultAuthenticatorApprole VaultAuthenticatorToken",
    ),
    # www
    "buildbot.www.auth": _m(
        (_UTIL, _EXTRAS),
        "CustomAuth HTPasswdAuth NoAuth RemoteUserAuth UserInfoProviderBase UserPasswordAuth",
    ),
    "buildbot.www.authz": _m(_UTIL, "Authz fnmatchStrMatcher reStrMatcher"),
    "buildbot.www.authz.roles": _m(
        _UTIL, "RolesFromDomain RolesFromEmails RolesFromGroups RolesFromOwner RolesFromUsername"
    ),
    "buildbot.www.authz.endpointmatchers": _m(
        _UTIL,
        "AnyControlEndpointMatcher AnyEndpointMatcher BranchEndpointMatcher "
        "EnableSchedulerEndpointMatcher ForceBuildEndpointMatcher RebuildBuildEndpointMatcher "
        "StopBuildEndpointMatcher ViewBuildsEndpointMatcher",
    ),
    "buildbot.www.oauth2": _m(_UTIL, "BitbucketAuth GitHubAuth GitLabAuth GoogleAuth"),
    "buildbot.www.avatar": _m(_UTIL, "AvatarGitHub AvatarGravatar"),
    "buildbot.www.ldapuserinfo": _m(_UTIL, "LdapUserInfo"),
    "buildbot.www.hooks.base": _m((f"{_HOOKS}.base", _WEBHOOKS), "BaseHookHandler base"),
    "buildbot.www.hooks.github": _m(
        (f"{_HOOKS}.github", _WEBHOOKS),
        "DEFAULT_GITHUB_API_URL DEFAULT_SKIPS_PATTERN GitHubEventHandler GitHubHandler github",
    ),
    "buildbot.www.hooks.gitlab": _m((f"{_HOOKS}.gitlab", _WEBHOOKS), "GitLabHandler gitlab"),
    "buildbot.www.hooks.bitbucket": _m(
        (f"{_HOOKS}.bitbucket", _WEBHOOKS), "BitBucketHandler bitbucket"
    ),
    "buildbot.www.hooks.bitbucketcloud": _m(
        (f"{_HOOKS}.bitbucket", _WEBHOOKS), "BitbucketCloudEventHandler bitbucketcloud"
    ),
    "buildbot.www.hooks.bitbucketserver": _m(
        (f"{_HOOKS}.bitbucket", _WEBHOOKS), "BitbucketServerEventHandler bitbucketserver"
    ),
    "buildbot.www.hooks.gitorious": _m(
        (f"{_HOOKS}.gitorious", _WEBHOOKS), "GitoriousHandler gitorious"
    ),
    "buildbot.www.hooks.poller": _m((f"{_HOOKS}.poller", _WEBHOOKS), "PollingHandler poller"),
    "buildbot.util.pullrequest": _m(f"{_HOOKS}.base", "PullRequestMixin"),
    # util
    "buildbot.util": _m((_EXTRAS, _CHANGEFILTER), "bytes2unicode flatten unicode2bytes NotABranch"),
    "buildbot.util.service": _m(_EXTRAS, "BuildbotService"),
    # zope.interface declarations of Twisted-style code (@implementer(IRenderable)): with the
    # buildyard[twisted] extra only, which brings zope.interface
    "buildbot.interfaces": _m("buildyard.compat.twisted", "IProperties IRenderable"),
    "buildbot.util.httpclientservice": _m(_EXTRAS, "HTTPClientService"),
    "buildbot.util.ssfilter": _m(_UTIL, "SourceStampFilter"),
    "buildbot.util.git_credential": _m(_UTIL, "GitCredentialInputRenderer GitCredentialOptions"),
}


def _with_parents(modules: dict[str, _Module]) -> dict[str, _Module]:
    everything = dict(modules)
    for name in modules:
        parts = name.split(".")
        for i in range(1, len(parts)):
            everything.setdefault(".".join(parts[:i]), _Module())
    return everything


#: The Twisted modules master.cfg files import to build c['www']['change_hook_auth'], answered
#: by buildyard's credential checkers (buildyard does not use Twisted).
TWISTED_MODULES: dict[str, _Module] = {
    "twisted.cred.strcred": _m(_CREDENTIALS, "makeChecker"),
    "twisted.cred.checkers": _m(
        _CREDENTIALS, "FilePasswordDB InMemoryUsernamePasswordDatabaseDontUse"
    ),
}

#: The two Twisted imports real master.cfg files use most, answered by small asyncio stand-ins
#: (buildyard.compat.twisted_style) when Twisted is not installed; with Twisted (the
#: buildyard[twisted] extra) they are Twisted's own.
TWISTED_STAND_INS: dict[str, _Module] = {
    "twisted.internet.defer": _m(
        _TWISTED_STYLE, "fail inlineCallbacks maybeDeferred returnValue succeed"
    ),
    "twisted.python.log": _m(_TWISTED_STYLE, "err msg"),
}

_ALL_MODULES = (
    _with_parents(MODULES) | _with_parents(TWISTED_MODULES) | _with_parents(TWISTED_STAND_INS)
)
_PACKAGES = frozenset(n.rpartition(".")[0] for n in _ALL_MODULES if "." in n)
# "twisted" and "twisted.cred": the packages around TWISTED_MODULES, and what Twisted's own
# package imports as it loads (its version): loading them is not users' Twisted-style code
_CRED_PARENTS = frozenset(_with_parents(TWISTED_MODULES)) - frozenset(TWISTED_MODULES)
_TWISTED_PACKAGE_INIT = frozenset({"twisted._version"})

# Buildbot 0.8 module paths, and what took their place.
_BUILDBOT_08 = {
    "buildbot.status": "its status targets became reporters in c['services'] "
    "(buildbot.plugins.reporters)",
    "buildbot.buildslave": "slaves became workers: buildbot.worker / buildbot.plugins.worker",
    "buildbot.steps.slave": "use buildbot.steps.worker",
    "buildbot.process.slavebuilder": "slaves became workers",
    "buildbot.libvirtbuildslave": "use buildbot.plugins.worker.LibVirtWorker",
    "buildbot.ec2buildslave": "use buildbot.plugins.worker.EC2LatentWorker",
    "buildbot.openstackbuildslave": "use buildbot.plugins.worker.OpenStackLatentWorker",
    "buildbot.steps.source.oldsource": "use the steps of buildbot.steps.source",
}


def _is_buildbot(name: str) -> bool:
    return name == "buildbot" or name.startswith("buildbot.")


def _is_twisted(name: str) -> bool:
    return name == "twisted" or name.startswith("twisted.")


def _import_error(fullname: str) -> BuildbotImportError:
    for prefix, advice in _BUILDBOT_08.items():
        if fullname == prefix or fullname.startswith(prefix + "."):
            return Buildbot08Module(
                f"{fullname} is from Buildbot 0.8, which buildyard (like Buildbot 4) does not "
                f"support: {advice}",
                name=fullname,
            )
    close = difflib.get_close_matches(fullname, MODULES, n=1, cutoff=0.8)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return UnsupportedBuildbotModule(
        f"{fullname} is not a Buildbot module buildyard supports{hint}; import Buildbot's names "
        "through buildbot.plugins (util, steps, schedulers, changes, worker, reporters, secrets)",
        name=fullname,
    )


def _source(reference: str) -> object:
    module_name, _, attribute = reference.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attribute) if attribute else module


def _build_module(fullname: str, spec: _Module) -> types.ModuleType:
    module = types.ModuleType(fullname, f"buildyard's stand-in for Buildbot's {fullname}.")
    sources = [_source(s) for s in spec.sources]
    missing = object()
    for name in spec.names:
        for source in sources:
            value = getattr(source, name, missing)
            if value is not missing:
                setattr(module, name, value)
                break
        else:  # pragma: no cover - the table is checked by the tests
            raise AssertionError(f"{fullname}.{name} is in no source of the table")
    module.__all__ = list(spec.names)  # type: ignore[attr-defined]

    def __getattr__(name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        close = difflib.get_close_matches(name, spec.names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise AttributeError(
            f"buildyard's {fullname} has no {name!r} (not a Buildbot name it supports){hint}",
            name=name,
            obj=module,
        )

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, spec: _Module) -> None:
        self._spec = spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _build_module(spec.name, self._spec)

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: :meth:`create_module` filled the module."""


class _BuildbotFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if _is_twisted(fullname):
            return _twisted_spec(fullname)
        if fullname == "zope" or fullname.startswith("zope."):  # Twisted's zope.interface
            twisted_adapter.activate(fullname)
            return None
        if not _is_buildbot(fullname):
            return None
        spec = _ALL_MODULES.get(fullname)
        if spec is None:
            raise _import_error(fullname)
        return importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(spec), is_package=fullname in _PACKAGES
        )


def _twisted_spec(fullname: str) -> importlib.machinery.ModuleSpec | None:
    """``twisted.cred.strcred`` and ``twisted.cred.checkers`` are ours; their parent packages
    too when Twisted is not installed. Any other Twisted module is users' Twisted-style code:
    with Twisted installed it turns on the ``buildyard[twisted]`` adapter and then loads from
    Twisted itself; without it, ``twisted.internet.defer`` and ``twisted.python.log`` are
    answered by stand-ins (:data:`TWISTED_STAND_INS`) and anything else fails naming the
    extra."""
    if fullname in TWISTED_MODULES:
        return importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(TWISTED_MODULES[fullname]), is_package=False
        )
    if twisted_adapter.available():
        if fullname in _CRED_PARENTS or fullname in _TWISTED_PACKAGE_INIT:
            return None  # Twisted's own packages, holding our two above
        twisted_adapter.activate(fullname)
        return None
    if fullname in TWISTED_STAND_INS:
        return importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(TWISTED_STAND_INS[fullname]), is_package=False
        )
    if fullname in _ALL_MODULES:  # "twisted", "twisted.cred", "twisted.internet", ...
        return importlib.machinery.ModuleSpec(
            fullname, _AliasLoader(_ALL_MODULES[fullname]), is_package=True
        )
    twisted_adapter.activate(fullname)  # says which extra is missing
    return None


def _is_stand_in(module: object) -> bool:
    spec = getattr(module, "__spec__", None)
    return isinstance(getattr(spec, "loader", None), _AliasLoader)


@contextlib.contextmanager
def buildbot_imports() -> Iterator[None]:
    """Answer ``import buildbot...`` (and the few ``twisted.cred`` modules of
    :data:`TWISTED_MODULES`) from buildyard for the duration of the block.

    ``buildbot`` modules and those two ``twisted.cred`` modules already in ``sys.modules`` (a
    real Buildbot imported by the same process) are set aside for the block and put back
    afterwards; the stand-ins are dropped. The rest of Twisted stays: users' Twisted-style code
    and Twisted's reactor live on after the load (and across reloads).
    """
    set_aside = {name: sys.modules.pop(name) for name in list(sys.modules) if _set_aside(name)}
    finder = _BuildbotFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if _set_aside(n) or _is_stand_in(sys.modules[n])]:
            del sys.modules[name]
            # a real Twisted package (twisted.cred) keeps no attribute naming our stand-in
            parent, _, child = name.rpartition(".")
            if getattr(sys.modules.get(parent), child, None) is not None:
                if name in set_aside:
                    setattr(sys.modules[parent], child, set_aside[name])
                else:
                    delattr(sys.modules[parent], child)
        sys.modules.update(set_aside)


def _set_aside(name: str) -> bool:
    """What a load replaces: every ``buildbot`` module, and the Twisted modules answered by
    stand-ins. Twisted itself (users' Twisted-style code and the reactor) stays loaded."""
    return _is_buildbot(name) or name in TWISTED_MODULES
