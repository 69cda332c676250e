"""Visual Studio and MSBuild steps (Buildbot's ``buildbot.steps.vstudio``).

Two families build a Visual Studio solution or project on a Windows worker:

* the IDE steps (``VC6`` ... ``VS2022``) run the release's IDE from the command line
  (``msdev`` for VC6, ``vcexpress`` for ``VCExpress9``, ``devenv.com`` otherwise) with the
  environment that release's compiler needs (``PATH``, ``INCLUDE``, ``LIB`` under
  ``installdir``). One row of :data:`RELEASES` per release says where it installs, which
  program it runs and how its environment is laid out; the classes only name their row.
* the MSBuild steps (``MsBuild4`` ... ``MsBuild17``) run ``vcvarsall.bat x86`` and then
  ``msbuild`` with ``/p:Configuration``, ``/p:Platform`` and ``/t:`` from ``mode`` and
  ``project``. ``MsBuild4``, ``12`` and ``14`` find ``vcvarsall.bat`` through the
  ``VSxxxCOMNTOOLS`` variable of their release; ``MsBuild141`` (``MsBuild15``), ``16`` and ``17``
  ask ``vswhere.exe`` for an installation in their version range.

Each step reads the stdout of its command as MSVC writes it: project headers
(``1>------ Build started: Project: ...``), compiled files (``1>main.cpp``), warnings
(``: warning C4996:``) and errors (``error C2065: ``). The headers and warnings go to a
``warnings`` log, the headers and errors to an ``errors`` log (errors on its stderr stream); the
step's statistics ``projects``, ``files``, ``warnings`` and ``errors`` count them. The step fails
if its command failed or any error was seen, else warns if any warning was seen.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from buildyard.common.errors import config_error, config_warning
from buildyard.master.logs.observer import LogLineObserver
from buildyard.master.model.properties import is_renderable
from buildyard.master.model.results import Results, worst
from buildyard.master.steps.base import BuildStep, BuildStepFailed, ShellMixin
from buildyard.master.steps.remotecommand import RemoteCommand

__all__ = [
    "MODES",
    "RELEASES",
    "VC6",
    "VC7",
    "VC8",
    "VC9",
    "VC10",
    "VC11",
    "VC12",
    "VC14",
    "VC141",
    "VS2003",
    "VS2005",
    "VS2008",
    "VS2010",
    "VS2012",
    "VS2013",
    "VS2015",
    "VS2017",
    "VS2019",
    "VS2022",
    "MSLogLineObserver",
    "MsBuild",
    "MsBuild4",
    "MsBuild12",
    "MsBuild14",
    "MsBuild15",
    "MsBuild16",
    "MsBuild17",
    "MsBuild141",
    "Release",
    "VCExpress9",
    "VisualStudio",
]

#: what ``mode`` may be: build what changed, build everything again, or remove the outputs
MODES = ("build", "rebuild", "clean")

# -- reading MSVC's output ------------------------------------------------------------------------

# "------ Build started: Project: zlib, Configuration: Release Win32 ------", maybe numbered "1>"
_PROJECT = re.compile(r"^(?:\d+>)?-{5}.+-{5}$")
# a C or C++ file the compiler is working on: "1>adler32.c" (no spaces in the name)
_FILE = re.compile(r"^(?:\d+>)?\S+\.(?:cpp|c)$")
# "gzlib.c(193): warning C4996: ...", "LINK : warning LNK4098: ..."
_WARNING = re.compile(r" ?: warning [A-Z]+[0-9]+:")
# "main.cpp(12): error C2065: ...", "LINK : fatal error LNK1181: ...", "error : ..."
_ERROR = re.compile(r" ?error (?:[A-Z]+[0-9]+)?\s?: ")


class MSLogLineObserver(LogLineObserver):
    """Counts what devenv and msbuild print on stdout (see the module's docstring) and copies
    the project headers, warnings and errors to the step's ``warnings`` and ``errors`` logs."""

    def __init__(self, logwarnings: Any, logerrors: Any) -> None:
        super().__init__()
        self.logwarnings = logwarnings
        self.logerrors = logerrors
        self.nbProjects = 0
        self.nbFiles = 0
        self.nbWarnings = 0
        self.nbErrors = 0

    def outLineReceived(self, line: str) -> None:
        if _PROJECT.search(line):
            self.nbProjects += 1
            self.logwarnings.add_stdout(line + "\n")
            self.logerrors.add_stdout(line + "\n")
        elif _FILE.search(line):
            self.nbFiles += 1
        elif _WARNING.search(line):
            self.nbWarnings += 1
            self.logwarnings.add_stdout(line + "\n")
        elif _ERROR.search(line):
            self.nbErrors += 1
            self.logerrors.add_stderr(line + "\n")


# -- the releases -------------------------------------------------------------------------------

# How a release's compiler finds its tools, headers and libraries: (variable, entry, only for
# this arch or None), in order. "{dir}" is the installation directory and "{lib}" the library
# sub-directory of the arch ("\amd64" for x64, nothing for x86).
_Layout = tuple[tuple[str, str, str | None], ...]

_VC6_LAYOUT: _Layout = (
    ("PATH", r"{dir}\Common\msdev98\BIN", None),
    ("PATH", r"{dir}\VC98\BIN", None),
    ("PATH", r"{dir}\Common\TOOLS\WINNT", None),
    ("PATH", r"{dir}\Common\TOOLS", None),
    ("INCLUDE", r"{dir}\VC98\INCLUDE", None),
    ("INCLUDE", r"{dir}\VC98\ATL\INCLUDE", None),
    ("INCLUDE", r"{dir}\VC98\MFC\INCLUDE", None),
    ("LIB", r"{dir}\VC98\LIB", None),
    ("LIB", r"{dir}\VC98\MFC\LIB", None),
)
_VC7_LAYOUT: _Layout = (
    ("PATH", r"{dir}\Common7\IDE", None),
    ("PATH", r"{dir}\VC7\BIN", None),
    ("PATH", r"{dir}\Common7\Tools", None),
    ("PATH", r"{dir}\Common7\Tools\bin", None),
    ("INCLUDE", r"{dir}\VC7\INCLUDE", None),
    ("INCLUDE", r"{dir}\VC7\ATLMFC\INCLUDE", None),
    ("INCLUDE", r"{dir}\VC7\PlatformSDK\include", None),
    ("INCLUDE", r"{dir}\SDK\v1.1\include", None),
    ("LIB", r"{dir}\VC7\LIB", None),
    ("LIB", r"{dir}\VC7\ATLMFC\LIB", None),
    ("LIB", r"{dir}\VC7\PlatformSDK\lib", None),
    ("LIB", r"{dir}\SDK\v1.1\lib", None),
)
# VC8 (2005) and every later release: the worker's own PATH follows the release's directories
_VC8_LAYOUT: _Layout = (
    ("PATH", r"{dir}\Common7\IDE", None),
    ("PATH", r"{dir}\VC\BIN\x86_amd64", "x64"),
    ("PATH", r"{dir}\VC\BIN", None),
    ("PATH", r"{dir}\Common7\Tools", None),
    ("PATH", r"{dir}\Common7\Tools\bin", None),
    ("PATH", r"{dir}\VC\PlatformSDK\bin", None),
    ("PATH", r"{dir}\SDK\v2.0\bin", None),
    ("PATH", r"{dir}\VC\VCPackages", None),
    ("PATH", "${PATH}", None),
    ("INCLUDE", r"{dir}\VC\INCLUDE", None),
    ("INCLUDE", r"{dir}\VC\ATLMFC\include", None),
    ("INCLUDE", r"{dir}\VC\PlatformSDK\include", None),
    ("LIB", r"{dir}\VC\LIB{lib}", None),
    ("LIB", r"{dir}\VC\ATLMFC\LIB{lib}", None),
    ("LIB", r"{dir}\VC\PlatformSDK\lib{lib}", None),
    ("LIB", r"{dir}\SDK\v2.0\lib{lib}", None),
)


@dataclasses.dataclass(frozen=True, slots=True)
class Release:
    """A Visual Studio release as its IDE step drives it."""

    installdir: str  # where it installs by default
    program: str  # the IDE's command-line program
    layout: _Layout  # its environment
    takes_arch: bool = False  # whether the step takes arch= (x86 or x64)

    def environment(self, installdir: str, arch: str | None) -> list[tuple[str, str]]:
        """The ``(variable, entry)`` pairs to add, in order, for ``installdir`` and ``arch``."""
        lib = r"\amd64" if arch == "x64" else ""
        return [
            (name, entry.replace("{dir}", installdir).replace("{lib}", lib))
            for name, entry, only in self.layout
            if only is None or only == arch
        ]


_VS = r"C:\Program Files (x86)\Microsoft Visual Studio"

#: Each IDE step's release, by the name of its class (the VSyyyy names are the same classes).
RELEASES: Mapping[str, Release] = {
    "VC6": Release(r"C:\Program Files\Microsoft Visual Studio", "msdev", _VC6_LAYOUT),
    "VC7": Release(
        r"C:\Program Files\Microsoft Visual Studio .NET 2003", "devenv.com", _VC7_LAYOUT
    ),
    "VC8": Release(r"C:\Program Files\Microsoft Visual Studio 8", "devenv.com", _VC8_LAYOUT, True),
    # the Express edition of 2008 through its own program (Buildbot's default directory: 2005's)
    "VCExpress9": Release(
        r"C:\Program Files\Microsoft Visual Studio 8", "vcexpress", _VC8_LAYOUT, True
    ),
    "VC9": Release(
        r"C:\Program Files\Microsoft Visual Studio 9.0", "devenv.com", _VC8_LAYOUT, True
    ),
    "VC10": Release(
        r"C:\Program Files\Microsoft Visual Studio 10.0", "devenv.com", _VC8_LAYOUT, True
    ),
    "VC11": Release(
        r"C:\Program Files\Microsoft Visual Studio 11.0", "devenv.com", _VC8_LAYOUT, True
    ),
    "VC12": Release(
        r"C:\Program Files\Microsoft Visual Studio 12.0", "devenv.com", _VC8_LAYOUT, True
    ),
    "VC14": Release(
        r"C:\Program Files (x86)\Microsoft Visual Studio 14.0", "devenv.com", _VC8_LAYOUT, True
    ),
    "VC141": Release(_VS + r"\2017\Community", "devenv.com", _VC8_LAYOUT, True),
    "VS2019": Release(_VS + r"\2019\Community", "devenv.com", _VC8_LAYOUT, True),
    # Visual Studio 2022 is a 64-bit program: it installs under "Program Files"
    "VS2022": Release(
        r"C:\Program Files\Microsoft Visual Studio\2022\Community", "devenv.com", _VC8_LAYOUT, True
    ),
}

_UNSET: Any = object()


def _words(value: Any) -> str:
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def _check_mode(step: str, mode: Any) -> None:
    if not is_renderable(mode) and mode not in MODES:
        config_error(f"{step}: mode must be one of 'build', 'rebuild' or 'clean', not {mode!r}")


def _check_paths(step: str, name: str, value: Any) -> None:
    if value is None or is_renderable(value):
        return
    if not (isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)):
        config_error(f"{step}: {name} must be a list of directories, not {value!r}")


class VisualStudio(ShellMixin, BuildStep):
    """What the Visual Studio and MSBuild steps share: their arguments, the environment, the
    reading of MSVC's output, the result and the summary. Not a step of its own: a subclass
    names a release (:attr:`release`) or makes its own command (:meth:`make_command`)."""

    name = "compile"
    description: Any = "compiling"
    descriptionDone: Any = "compile"
    renderables: ClassVar[Sequence[str]] = (
        "installdir",
        "mode",
        "projectfile",
        "config",
        "useenv",
        "project",
        "INCLUDE",
        "LIB",
        "PATH",
    )

    #: the release an IDE step drives (None in the MSBuild steps and the base class)
    release: ClassVar[Release | None] = None
    default_installdir: ClassVar[str | None] = None

    def __init__(
        self,
        installdir: Any = None,
        mode: Any = "rebuild",
        projectfile: Any = None,
        config: Any = "release",
        useenv: Any = False,
        project: Any = None,
        INCLUDE: Any = None,
        LIB: Any = None,
        PATH: Any = None,
        **kwargs: Any,
    ) -> None:
        step = type(self).__name__
        if type(self) is VisualStudio:
            config_error(
                "VisualStudio is the base of the Visual Studio steps: use one of VC6 ... VS2022 "
                "or MsBuild4 ... MsBuild17, or subclass it with a make_command()"
            )
        _check_mode(step, mode)
        for name, value in (("INCLUDE", INCLUDE), ("LIB", LIB), ("PATH", PATH)):
            _check_paths(step, name, value)
        self.installdir = installdir
        self.mode = mode
        self.projectfile = projectfile
        self.config = config
        self.useenv = useenv
        self.project = project
        self.INCLUDE = INCLUDE or []
        self.LIB = LIB or []
        self.PATH = PATH or []
        rest = self.setupShellMixin(kwargs, prohibitArgs=["command"])
        super().__init__(**rest)
        self.logobserver: MSLogLineObserver | None = None

    # -- the environment --------------------------------------------------------------------

    def add_env_path(self, name: str, value: str) -> None:
        """Append ``value`` to the ``;``-separated list in the step's variable ``name``."""
        env = self.env
        old = env.get(name)
        if isinstance(old, list | tuple):
            old = ";".join(old)
        text = "" if not old else (old if old.endswith(";") else old + ";")
        env[name] = text + (value if value.endswith(";") else value + ";")

    def setupEnvironment(self) -> None:
        """The step's ``env`` with the directories of ``PATH``, ``INCLUDE`` and ``LIB`` (first),
        then those of the release under ``installdir``."""
        # a copy: the configured dict is shared by every build of the step
        self.env = dict(self.env or {})
        for name in ("PATH", "INCLUDE", "LIB"):
            for entry in getattr(self, name):
                self.add_env_path(name, entry)
        if not self.installdir:
            self.installdir = self.default_installdir
        if self.release is not None:
            assert self.installdir is not None
            for name, entry in self.release.environment(
                self.installdir, getattr(self, "arch", None)
            ):
                self.add_env_path(name, entry)

    # -- the command ------------------------------------------------------------------------

    def _mode(self) -> str:
        if self.mode not in MODES:  # run() has said so in the step's err.text log
            raise BuildStepFailed(f"{type(self).__name__}: mode {self.mode!r}")
        return str(self.mode)

    def uses_env(self) -> bool:
        """Whether the IDE is told to use the environment's INCLUDE, LIB and PATH: ``useenv``,
        or INCLUDE or LIB directories of the step's own (what /UseEnv is for)."""
        return bool(self.useenv or self.INCLUDE or self.LIB)

    def make_command(self) -> Any:
        """The command the step runs (the IDE's, from :attr:`release`)."""
        release = self.release
        if release is None:
            return self.command
        mode = self._mode()
        if release.program == "msdev":
            command = [release.program, self.projectfile, "/MAKE"]
            command.append(f"{self.project or 'ALL'} - {self.config}")
            command.append(f"/{mode.upper()}")
            if self.uses_env():
                command.append("/USEENV")
            return command
        command = [release.program, self.projectfile, f"/{mode.capitalize()}", self.config]
        if self.uses_env():
            command.append("/UseEnv")
        if self.project is not None:
            command += ["/Project", self.project]
        return command

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> int:
        if self.mode not in MODES:  # a renderable's value: plain ones are checked at load
            await self.addCompleteLog(
                "err.text",
                f"{type(self).__name__}: mode must be one of 'build', 'rebuild' or 'clean', "
                f"not {self.mode!r}\n",
            )
            return int(Results.FAILURE)
        self.setupEnvironment()
        self.command = self.make_command()
        if self.command is None:
            raise BuildStepFailed(f"{type(self).__name__} has no command to run")
        warnings_log = await self.addLog("warnings")
        errors_log = await self.addLog("errors")
        self.logobserver = MSLogLineObserver(warnings_log, errors_log)
        self.addLogObserver("stdio", self.logobserver)
        cmd = await self.makeRemoteShellCommand()
        await self.runCommand(cmd)
        stdio = self.logs.get("stdio")
        if stdio is not None:
            await stdio.finish()  # every line counted
        await warnings_log.finish()
        await errors_log.finish()
        return int(self.evaluate_result(cmd))

    def evaluate_result(self, cmd: RemoteCommand) -> Results:
        """FAILURE if the command failed or printed errors, WARNINGS if it printed warnings."""
        seen = self.logobserver
        assert seen is not None
        self.setStatistic("projects", seen.nbProjects)
        self.setStatistic("files", seen.nbFiles)
        self.setStatistic("warnings", seen.nbWarnings)
        self.setStatistic("errors", seen.nbErrors)
        counted = (
            Results.FAILURE
            if seen.nbErrors
            else Results.WARNINGS
            if seen.nbWarnings
            else Results.SUCCESS
        )
        return worst([cmd.results(), counted])

    # -- summaries --------------------------------------------------------------------------

    def _result_suffix(self) -> str:
        if self.results is None or self.results == Results.SUCCESS:
            return ""
        return f" ({self.results.text})" + (" (timed out)" if self.timed_out else "")

    def getCurrentSummary(self) -> dict[str, str]:
        return BuildStep.getCurrentSummary(self)

    def getResultSummary(self) -> dict[str, str]:
        seen = self.logobserver
        if seen is None:  # skipped, or ended before its command: the result alone, as Buildbot
            return {"step": self.results.text if self.results is not None else "finished"}
        text = (
            f"{_words(self.descriptionDone or 'compile')} {seen.nbProjects} projects "
            f"{seen.nbFiles} files"
        )
        if seen.nbWarnings:
            text += f" {seen.nbWarnings} warnings"
        if seen.nbErrors:
            text += f" {seen.nbErrors} errors"
        return {"step": text + self._result_suffix()}


# -- the IDE steps ------------------------------------------------------------------------------


class _IdeStep(VisualStudio):
    """A step driving :attr:`release`'s IDE; the releases from VC8 on take ``arch``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        release = RELEASES.get(cls.__name__)
        if release is not None and "release" not in cls.__dict__:
            cls.release = release
            cls.default_installdir = release.installdir

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        release = self.release
        if release is not None and release.takes_arch:
            arch = kwargs.pop("arch", "x86")
            if not is_renderable(arch) and arch not in ("x86", "x64"):
                config_warning(
                    f"{type(self).__name__}: arch {arch!r} is neither 'x86' nor 'x64': the "
                    "x86 directories are used"
                )
            self.arch = arch
        super().__init__(*args, **kwargs)


class VC6(_IdeStep):
    """Visual C++ 6: ``msdev <projectfile> /MAKE "<project> - <config>" /REBUILD``."""


class VC7(_IdeStep):
    """Visual Studio .NET 2003: ``devenv.com <projectfile> /Rebuild <config>``."""


class VC8(_IdeStep):
    """Visual Studio 2005 (``arch`` x86 or x64)."""

    renderables: ClassVar[Sequence[str]] = ("arch",)


class VCExpress9(VC8):
    """Visual C++ 2008 Express: ``vcexpress`` instead of ``devenv.com``."""


class VC9(VC8):
    """Visual Studio 2008."""


class VC10(VC9):
    """Visual Studio 2010."""


class VC11(VC10):
    """Visual Studio 2012."""


class VC12(VC11):
    """Visual Studio 2013."""


class VC14(VC12):
    """Visual Studio 2015."""


class VC141(VC14):
    """Visual Studio 2017."""


class VS2019(VC141):
    """Visual Studio 2019."""


class VS2022(VC141):
    """Visual Studio 2022."""


VS2003 = VC7
VS2005 = VC8
VS2008 = VC9
VS2010 = VC10
VS2012 = VC11
VS2013 = VC12
VS2015 = VC14
VS2017 = VC141


# -- the MSBuild steps --------------------------------------------------------------------------


class _MsBuildStep(VisualStudio):
    """``vcvarsall.bat x86 && msbuild <projectfile> /p:Configuration=.. /p:Platform=..``."""

    description: Any = None  # "building <project> for <config>|<platform>"
    renderables: ClassVar[Sequence[str]] = ("platform", "defines")

    def __init__(self, platform: Any = _UNSET, defines: Any = None, **kwargs: Any) -> None:
        step = type(self).__name__
        if platform is _UNSET or platform is None:
            config_error(f'{step}: platform is mandatory (a string such as "Win32" or "x64")')
        if not (
            defines is None
            or is_renderable(defines)
            or (isinstance(defines, list | tuple) and all(isinstance(d, str) for d in defines))
        ):
            config_error(f"{step}: defines must be a list of strings, not {defines!r}")
        self.platform = platform
        self.defines = defines
        if kwargs.get("installdir") is not None:
            config_warning(
                f"{step}: installdir has no effect on the MSBuild steps (vcvarsall.bat is found "
                "through the VSxxxCOMNTOOLS variable, or vswhere.exe from MsBuild141 on)"
            )
        super().__init__(**kwargs)

    def describe_project(self, done: bool = False) -> str:
        return f"{self.project or 'solution'} for {self.config}|{self.platform}"

    def _msbuild(self) -> str:
        """``msbuild`` and its arguments, quoted for cmd.exe."""
        words = [
            f'msbuild "{self.projectfile}"',
            f'/p:Configuration="{self.config}"',
            f'/p:Platform="{self.platform}"',
            "/maxcpucount",
        ]
        target = self._mode().capitalize()
        if self.project is not None:
            # a project's own target; Rebuild is what msbuild does for a bare project name
            words.append(
                f'/t:"{self.project}"' if target == "Rebuild" else f'/t:"{self.project}:{target}"'
            )
        else:
            words.append(f"/t:{target}")
        if self.defines:
            words.append(f'/p:DefineConstants="{";".join(self.defines)}"')
        if self.useenv:
            # msbuild's C++ targets read INCLUDE, LIB and PATH from the environment with it
            # (INCLUDE and LIB alone only set the variables: vcvarsall.bat adds to them)
            words.append("/p:UseEnv=true")
        return " ".join(words)

    def getCurrentSummary(self) -> dict[str, str]:
        if self.description is not None:
            return BuildStep.getCurrentSummary(self)
        return {"step": "building " + self.describe_project()}


class MsBuild4(_MsBuildStep):
    """MSBuild of Visual Studio 2012, through ``%VS110COMNTOOLS%``."""

    vcenv_bat: ClassVar[str] = r"${VS110COMNTOOLS}..\..\VC\vcvarsall.bat"
    descriptionDone: Any = None  # "built <project> for <config>|<platform>"

    def setupEnvironment(self) -> None:
        super().setupEnvironment()
        self.env["VCENV_BAT"] = self.vcenv_bat

    def make_command(self) -> Any:
        return f'"%VCENV_BAT%" x86 && {self._msbuild()}'

    def getResultSummary(self) -> dict[str, str]:
        if self.logobserver is None or self.descriptionDone is not None:
            return super().getResultSummary()
        return {"step": "built " + self.describe_project() + self._result_suffix()}


MsBuild = MsBuild4


class MsBuild12(MsBuild4):
    """MSBuild of Visual Studio 2013, through ``%VS120COMNTOOLS%``."""

    vcenv_bat: ClassVar[str] = r"${VS120COMNTOOLS}..\..\VC\vcvarsall.bat"


class MsBuild14(MsBuild4):
    """MSBuild of Visual Studio 2015, through ``%VS140COMNTOOLS%``."""

    vcenv_bat: ClassVar[str] = r"${VS140COMNTOOLS}..\..\VC\vcvarsall.bat"


class MsBuild141(_MsBuildStep):
    """MSBuild of Visual Studio 2017: the installation ``vswhere.exe`` finds in
    :attr:`version_range`, and its ``VC\\Auxiliary\\Build\\vcvarsall.bat``."""

    vcenv_bat: ClassVar[str] = r"\VC\Auxiliary\Build\vcvarsall.bat"
    version_range: ClassVar[str] = "[15.0,16.0)"

    def setupEnvironment(self) -> None:
        super().setupEnvironment()
        self.env["VCENV_BAT"] = self.vcenv_bat
        # where vswhere.exe is
        self.add_env_path("PATH", "C:\\Program Files (x86)\\Microsoft Visual Studio\\Installer\\")
        self.add_env_path("PATH", "C:\\Program Files\\Microsoft Visual Studio\\Installer\\")
        self.add_env_path("PATH", "${PATH}")

    def make_command(self) -> Any:
        vswhere = (
            f'vswhere.exe -version "{self.version_range}" -products * -property installationPath'
        )
        return (
            f"FOR /F \"tokens=*\" %%I in ('{vswhere}')  do "
            f'"%%I\\%VCENV_BAT%" x86 && {self._msbuild()}'
        )


MsBuild15 = MsBuild141


class MsBuild16(MsBuild141):
    """MSBuild of Visual Studio 2019."""

    version_range: ClassVar[str] = "[16.0,17.0)"


class MsBuild17(MsBuild141):
    """MSBuild of Visual Studio 2022."""

    version_range: ClassVar[str] = "[17.0,18.0)"
