"""The Visual Studio and MSBuild steps on their own: the command and environment each release
gets from its arguments, the reading of MSVC's output, the result and the summary, and the
arguments refused. Builds that run them on real workers (with stand-in programs, since devenv
and msbuild do not run here) are in test_vstudio_build.py, and side by side with Buildbot 4.3.0
in tests/e2e/test_vstudio_buildbot.py."""

from __future__ import annotations

import re
from typing import Any

import pytest

from buildyard.common.errors import ConfigError, ConfigWarning
from buildyard.master.config.compat import buildbot_imports
from buildyard.master.model.properties import Property
from buildyard.master.model.results import Results
from buildyard.master.steps import vstudio
from buildyard.plugins import steps as plugin_steps

VC6_DIR = r"C:\Program Files\Microsoft Visual Studio"


def prepared(step: vstudio.VisualStudio) -> tuple[Any, dict[str, Any]]:
    """The command and environment ``step`` would send (its arguments taken as rendered)."""
    step.setupEnvironment()
    return step.make_command(), step.env


# -- the IDE steps ----------------------------------------------------------------------------


def test_vc6_runs_msdev_with_its_directories() -> None:
    command, env = prepared(vstudio.VC6(projectfile="core.dsw", config="Win32 Release"))
    assert command == ["msdev", "core.dsw", "/MAKE", "ALL - Win32 Release", "/REBUILD"]
    common, vc98 = VC6_DIR + r"\Common", VC6_DIR + r"\VC98"
    assert env == {
        "PATH": ";".join(
            [common + r"\msdev98\BIN", vc98 + r"\BIN", common + r"\TOOLS\WINNT", common + r"\TOOLS"]
        )
        + ";",
        "INCLUDE": f"{vc98}\\INCLUDE;{vc98}\\ATL\\INCLUDE;{vc98}\\MFC\\INCLUDE;",
        "LIB": f"{vc98}\\LIB;{vc98}\\MFC\\LIB;",
    }
    step = vstudio.VC6(projectfile="core.dsw", project="core", mode="build", useenv=True)
    assert step.make_command() == [
        "msdev",
        "core.dsw",
        "/MAKE",
        "core - release",  # Buildbot's default config
        "/BUILD",
        "/USEENV",
    ]
    assert vstudio.VC6(projectfile="a", mode="clean").make_command()[-1] == "/CLEAN"


def test_vc7_runs_devenv_and_the_step_directories_come_first() -> None:
    step = vstudio.VS2003(
        installdir=r"D:\VS7",
        projectfile="a.sln",
        config="Debug",
        project="app",
        INCLUDE=[r"D:\inc"],
        PATH=[r"D:\bin"],
        env={"LIB": r"D:\lib1", "OTHER": "x"},
    )
    command, env = prepared(step)
    # INCLUDE (or LIB) of the step's own turn /UseEnv on, PATH alone does not
    assert command == ["devenv.com", "a.sln", "/Rebuild", "Debug", "/UseEnv", "/Project", "app"]
    assert env["PATH"] == (
        r"D:\bin;D:\VS7\Common7\IDE;D:\VS7\VC7\BIN;D:\VS7\Common7\Tools;D:\VS7\Common7\Tools\bin;"
    )
    assert env["INCLUDE"].startswith(r"D:\inc;D:\VS7\VC7\INCLUDE;")
    assert env["INCLUDE"].endswith(r"D:\VS7\SDK\v1.1\include;")
    assert env["LIB"].startswith(r"D:\lib1;D:\VS7\VC7\LIB;")  # the env's own value first
    assert env["OTHER"] == "x"
    assert vstudio.VC7(projectfile="a", PATH=["p"]).make_command()[-1] == "release"
    assert vstudio.VC7 is vstudio.VS2003


def test_the_configured_env_is_not_changed_by_a_build() -> None:
    env = {"PATH": r"D:\x"}
    step = vstudio.VS2005(projectfile="a.sln", env=env)
    prepared(step)
    assert env == {"PATH": r"D:\x"}


def test_vc8_and_later_add_the_worker_path_and_follow_arch() -> None:
    _, x86 = prepared(vstudio.VC8(installdir=r"E:\VS8", projectfile="a.sln"))
    assert x86["PATH"] == (
        r"E:\VS8\Common7\IDE;E:\VS8\VC\BIN;E:\VS8\Common7\Tools;E:\VS8\Common7\Tools\bin;"
        r"E:\VS8\VC\PlatformSDK\bin;E:\VS8\SDK\v2.0\bin;E:\VS8\VC\VCPackages;${PATH};"
    )
    assert x86["INCLUDE"] == (
        r"E:\VS8\VC\INCLUDE;E:\VS8\VC\ATLMFC\include;E:\VS8\VC\PlatformSDK\include;"
    )
    assert x86["LIB"] == (
        r"E:\VS8\VC\LIB;E:\VS8\VC\ATLMFC\LIB;E:\VS8\VC\PlatformSDK\lib;E:\VS8\SDK\v2.0\lib;"
    )
    _, x64 = prepared(vstudio.VC8(installdir=r"E:\VS8", projectfile="a.sln", arch="x64"))
    assert x64["PATH"].startswith(r"E:\VS8\Common7\IDE;E:\VS8\VC\BIN\x86_amd64;E:\VS8\VC\BIN;")
    assert x64["LIB"] == (
        r"E:\VS8\VC\LIB\amd64;E:\VS8\VC\ATLMFC\LIB\amd64;E:\VS8\VC\PlatformSDK\lib\amd64;"
        r"E:\VS8\SDK\v2.0\lib\amd64;"
    )


@pytest.mark.parametrize(
    ("cls", "program", "installdir"),
    [
        (vstudio.VC6, "msdev", r"C:\Program Files\Microsoft Visual Studio"),
        (vstudio.VS2003, "devenv.com", r"C:\Program Files\Microsoft Visual Studio .NET 2003"),
        (vstudio.VS2005, "devenv.com", r"C:\Program Files\Microsoft Visual Studio 8"),
        (vstudio.VCExpress9, "vcexpress", r"C:\Program Files\Microsoft Visual Studio 8"),
        (vstudio.VS2008, "devenv.com", r"C:\Program Files\Microsoft Visual Studio 9.0"),
        (vstudio.VS2010, "devenv.com", r"C:\Program Files\Microsoft Visual Studio 10.0"),
        (vstudio.VS2012, "devenv.com", r"C:\Program Files\Microsoft Visual Studio 11.0"),
        (vstudio.VS2013, "devenv.com", r"C:\Program Files\Microsoft Visual Studio 12.0"),
        (vstudio.VS2015, "devenv.com", r"C:\Program Files (x86)\Microsoft Visual Studio 14.0"),
        (
            vstudio.VS2017,
            "devenv.com",
            r"C:\Program Files (x86)\Microsoft Visual Studio\2017\Community",
        ),
        (
            vstudio.VS2019,
            "devenv.com",
            r"C:\Program Files (x86)\Microsoft Visual Studio\2019\Community",
        ),
        # Buildbot 4.3.0 names "Program Files (x86)" here, where 2022 (64-bit) does not install
        (vstudio.VS2022, "devenv.com", r"C:\Program Files\Microsoft Visual Studio\2022\Community"),
    ],
)
def test_each_release_has_its_program_and_directory(
    cls: Any, program: str, installdir: str
) -> None:
    step = cls(projectfile="p.sln", mode="build", config="Release|x64")
    command, env = prepared(step)
    assert command[0] == program
    assert step.installdir == installdir
    assert env["PATH"].startswith(installdir + "\\")
    assert step.name == "compile"
    # every name of Buildbot's family is the same class in master.cfg's vocabulary
    assert getattr(plugin_steps, cls.__name__) is cls


def test_the_aliases_are_buildbots() -> None:
    pairs = {
        "VS2003": "VC7",
        "VS2005": "VC8",
        "VS2008": "VC9",
        "VS2010": "VC10",
        "VS2012": "VC11",
        "VS2013": "VC12",
        "VS2015": "VC14",
        "VS2017": "VC141",
        "MsBuild": "MsBuild4",
        "MsBuild15": "MsBuild141",
    }
    for alias, name in pairs.items():
        assert getattr(plugin_steps, alias) is getattr(vstudio, name)
    assert issubclass(vstudio.VS2022, vstudio.VS2017)
    assert issubclass(vstudio.VS2019, vstudio.VS2017)
    assert issubclass(vstudio.MsBuild17, vstudio.MsBuild141)


def test_a_renderable_argument_is_rendered() -> None:
    step = vstudio.VS2019(projectfile=Property("sln"), config=Property("cfg"), arch=Property("a"))
    rendered = {"projectfile", "config", "arch", "mode", "installdir", "INCLUDE"}
    assert rendered <= set(step._all_renderables())


# -- the MSBuild steps ------------------------------------------------------------------------


def test_msbuild4_runs_vcvarsall_then_msbuild() -> None:
    step = vstudio.MsBuild4("Win32", projectfile="a.sln", config="Release")
    command, env = prepared(step)
    assert command == (
        '"%VCENV_BAT%" x86 && msbuild "a.sln" /p:Configuration="Release" '
        '/p:Platform="Win32" /maxcpucount /t:Rebuild'
    )
    assert env == {"VCENV_BAT": r"${VS110COMNTOOLS}..\..\VC\vcvarsall.bat"}
    assert prepared(vstudio.MsBuild12("x64", projectfile="a"))[1]["VCENV_BAT"].startswith(
        "${VS120COMNTOOLS}"
    )
    assert prepared(vstudio.MsBuild14("x64", projectfile="a"))[1]["VCENV_BAT"].startswith(
        "${VS140COMNTOOLS}"
    )


@pytest.mark.parametrize(
    ("mode", "project", "target"),
    [
        ("rebuild", None, " /t:Rebuild"),
        ("build", None, " /t:Build"),
        ("clean", None, " /t:Clean"),
        ("rebuild", "app", ' /t:"app"'),
        ("build", "app", ' /t:"app:Build"'),
        ("clean", "app", ' /t:"app:Clean"'),
    ],
)
def test_msbuild_targets(mode: str, project: str | None, target: str) -> None:
    step = vstudio.MsBuild4(platform="x64", projectfile="a.sln", mode=mode, project=project)
    assert step.make_command().endswith("/maxcpucount" + target)


def test_msbuild_defines_and_useenv() -> None:
    step = vstudio.MsBuild("x64", projectfile="a.sln", defines=["A", "B=1"])
    assert step.make_command().endswith(' /t:Rebuild /p:DefineConstants="A;B=1"')
    # INCLUDE alone only sets the variable (as in Buildbot); useenv=True is msbuild's UseEnv
    included = vstudio.MsBuild("x64", projectfile="a.sln", INCLUDE=[r"D:\inc"])
    command, env = prepared(included)
    assert "UseEnv" not in command
    assert env["INCLUDE"] == r"D:\inc;"
    told = vstudio.MsBuild("x64", projectfile="a.sln", useenv=True)
    assert told.make_command().endswith(" /t:Rebuild /p:UseEnv=true")


def test_msbuild141_and_later_ask_vswhere() -> None:
    step = vstudio.MsBuild141("Win32", projectfile="a.sln", config="Release", project="app")
    command, env = prepared(step)
    assert command == (
        'FOR /F "tokens=*" %%I in (\'vswhere.exe -version "[15.0,16.0)" -products * '
        '-property installationPath\')  do "%%I\\%VCENV_BAT%" x86 && msbuild "a.sln" '
        '/p:Configuration="Release" /p:Platform="Win32" /maxcpucount /t:"app"'
    )
    assert env == {
        "VCENV_BAT": r"\VC\Auxiliary\Build\vcvarsall.bat",
        "PATH": r"C:\Program Files (x86)\Microsoft Visual Studio\Installer\;"
        r"C:\Program Files\Microsoft Visual Studio\Installer\;${PATH};",
    }
    assert '"[16.0,17.0)"' in vstudio.MsBuild16("x64", projectfile="a").make_command()
    assert '"[17.0,18.0)"' in vstudio.MsBuild17("x64", projectfile="a").make_command()


# -- arguments refused ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: vstudio.MsBuild(projectfile="a.sln"), "MsBuild4: platform is mandatory"),
        (lambda: vstudio.MsBuild17(None, projectfile="a"), "MsBuild17: platform is mandatory"),
        (lambda: vstudio.VS2017(projectfile="a", mode="all"), "VC141: mode must be one of"),
        (lambda: vstudio.VS2017(command=["x"]), "invalid VC141 argument command"),
        (lambda: vstudio.VC7(arch="x64"), "invalid VC7 argument arch"),
        (lambda: vstudio.MsBuild("x64", arch="x64"), "invalid MsBuild4 argument arch"),
        (lambda: vstudio.VC8(INCLUDE=r"C:\inc"), "VC8: INCLUDE must be a list of directories"),
        (lambda: vstudio.MsBuild("x64", defines="A"), "MsBuild4: defines must be a list"),
        (vstudio.VisualStudio, "VisualStudio is the base of the Visual Studio steps"),
        (lambda: vstudio.VS2022(bogus=1), "invalid VS2022 argument bogus"),
    ],
)
def test_bad_arguments_are_config_errors(make: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        make()


def test_installdir_on_an_msbuild_step_is_warned_about() -> None:
    with pytest.warns(ConfigWarning, match="MsBuild16: installdir has no effect on the MSBuild"):
        step = vstudio.MsBuild16("x64", projectfile="a.sln", installdir=r"D:\VS")
    assert "D:" not in step.make_command()


def test_an_unknown_arch_is_warned_about() -> None:
    with pytest.warns(ConfigWarning, match="VC9: arch 'arm64' is neither 'x86' nor 'x64'"):
        step = vstudio.VC9(projectfile="a", arch="arm64")
    assert prepared(step)[1]["LIB"].startswith(
        r"C:\Program Files\Microsoft Visual Studio 9.0\VC\LIB;"
    )


# -- reading the output -----------------------------------------------------------------------


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add_stdout(self, text: str) -> None:
        self.lines.append("o" + text)

    def add_stderr(self, text: str) -> None:
        self.lines.append("e" + text)


OUTPUT = [
    "Microsoft Visual Studio 2017 Version 15.9.28307.1321.",
    "1>------ Rebuild All started: Project: zlib, Configuration: Release Win32 ------",
    "1>adler32.c",
    r"1>c:\src\gzlib.c(193): warning C4996: 'wcstombs': This function may be unsafe.",
    "1>zlib.vcxproj -> C:\\out\\zlib.lib",
    "2>------ Rebuild All started: Project: app, Configuration: Release Win32 ------",
    "2>main.cpp",
    "2>my file.cpp",  # a name with a space is not counted as a file
    r"2>c:\src\main.cpp(12): error C2065: 'x': undeclared identifier",
    "2>LINK : fatal error LNK1181: cannot open input file 'z.lib'",
    r"D:\src\core.cpp(40) : warning C4101: 'unused' : unreferenced local variable",
    "core.dll - 1 error(s), 1 warning(s)",
    "========== Rebuild All: 1 succeeded, 1 failed, 0 skipped ==========",
]


def test_the_observer_counts_and_copies_msvc_lines() -> None:
    warnings, errors = _Log(), _Log()
    observer = vstudio.MSLogLineObserver(warnings, errors)
    for line in OUTPUT:
        observer.outLineReceived(line)
    observer.errLineReceived("error C1: on stderr is not counted")
    counts = (observer.nbProjects, observer.nbFiles, observer.nbWarnings, observer.nbErrors)
    assert counts == (2, 2, 2, 2)
    assert warnings.lines == [
        "o" + OUTPUT[1] + "\n",
        "o" + OUTPUT[3] + "\n",
        "o" + OUTPUT[5] + "\n",
        "o" + OUTPUT[10] + "\n",
    ]
    assert errors.lines == [
        "o" + OUTPUT[1] + "\n",
        "o" + OUTPUT[5] + "\n",
        "e" + OUTPUT[8] + "\n",
        "e" + OUTPUT[9] + "\n",
    ]


class _Cmd:
    def __init__(self, result: Results) -> None:
        self.result = result

    def results(self) -> Results:
        return self.result


def _finished(step: vstudio.VisualStudio, lines: list[str], rc_result: Results) -> Results:
    step.logobserver = vstudio.MSLogLineObserver(_Log(), _Log())
    for line in lines:
        step.logobserver.outLineReceived(line)
    step.results = step.evaluate_result(_Cmd(rc_result))  # type: ignore[arg-type]
    return step.results


def test_result_statistics_and_summary() -> None:
    step = vstudio.VS2017(projectfile="a.sln", descriptionDone="compile Release|Win32")
    assert step.getCurrentSummary() == {"step": "compiling"}
    assert _finished(step, OUTPUT, Results.SUCCESS) == Results.FAILURE  # errors
    assert step.getStatistics() == {"projects": 2, "files": 2, "warnings": 2, "errors": 2}
    # descriptionDone leads the summary (Buildbot 4.3.0 always writes "compile" there)
    assert step.getResultSummary() == {
        "step": "compile Release|Win32 2 projects 2 files 2 warnings 2 errors (failure)"
    }
    plain = vstudio.VS2017(projectfile="a.sln")
    assert _finished(plain, OUTPUT[:4], Results.SUCCESS) == Results.WARNINGS
    assert plain.getResultSummary() == {"step": "compile 1 projects 1 files 1 warnings (warnings)"}
    clean = vstudio.VS2017(projectfile="a.sln")
    assert _finished(clean, OUTPUT[1:3], Results.SUCCESS) == Results.SUCCESS
    assert clean.getResultSummary() == {"step": "compile 1 projects 1 files"}
    # a step that ended before its command (skipped): its result alone, as in Buildbot
    skipped = vstudio.VS2017(projectfile="a.sln", descriptionDone="done")
    skipped.results = Results.SKIPPED
    assert skipped.getResultSummary() == {"step": "skipped"}
    # the command's own failure counts even with nothing printed
    failed = vstudio.VS2017(projectfile="a.sln")
    assert _finished(failed, [], Results.FAILURE) == Results.FAILURE
    assert failed.getResultSummary() == {"step": "compile 0 projects 0 files (failure)"}


def test_msbuild_summaries() -> None:
    step = vstudio.MsBuild4("Win32", projectfile="a.sln", config="Release", project="app")
    assert step.getCurrentSummary() == {"step": "building app for Release|Win32"}
    _finished(step, [], Results.SUCCESS)
    assert step.getResultSummary() == {"step": "built app for Release|Win32"}
    # Buildbot 4.3.0 says "built ..." whatever the result; the result is added here
    _finished(step, OUTPUT, Results.SUCCESS)
    assert step.getResultSummary() == {"step": "built app for Release|Win32 (failure)"}
    # what the user describes is shown
    told = vstudio.MsBuild4(
        "x64", projectfile="a.sln", description="making", descriptionDone="made"
    )
    assert told.getCurrentSummary() == {"step": "making"}
    _finished(told, OUTPUT[1:3], Results.SUCCESS)
    assert told.getResultSummary() == {"step": "made 1 projects 1 files"}
    # MsBuild141 and later: Buildbot's counting summary
    newer = vstudio.MsBuild16("x64", projectfile="a.sln")
    assert newer.getCurrentSummary() == {"step": "building solution for release|x64"}
    _finished(newer, OUTPUT[1:4], Results.SUCCESS)
    assert newer.getResultSummary() == {"step": "compile 1 projects 1 files 1 warnings (warnings)"}


def test_buildbots_module_path_holds_the_family_and_its_base() -> None:
    with buildbot_imports():
        from buildbot.steps import vstudio as theirs  # type: ignore[import-not-found]

        names = ["VisualStudio", "MSLogLineObserver", "VS2022", "VS2017", "MsBuild", "VCExpress9"]
        assert {n: getattr(theirs, n) for n in names} == {n: getattr(vstudio, n) for n in names}
