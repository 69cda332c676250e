"""Stand-ins for devenv.com, msdev, vcexpress, msbuild and vcvarsall.bat, for builds of the
Visual Studio steps on a Linux worker, and the factory that uses them (shared by
test_vstudio_build.py and tests/e2e/test_vstudio_buildbot.py).

The stand-in is one Python script linked under each program's name. It writes one line on
stderr, ``STAND-IN {json}``, with the name it was run as, its arguments and the variables the
steps set (PATH, INCLUDE, LIB, VCENV_BAT), then prints the recorded MSVC output of the project
file it was given (``<file>.out``, with Windows line ends) and exits with ``<file>.rc``.

How the worker finds it: the steps put Windows directories on PATH (``C:\\...;C:\\...``), which
a POSIX worker splits at ``:``, so the first entry is the relative directory ``C`` (``D`` for a
PATH starting ``D:\\``), looked up in the step's workdir. The factory's first step links the
stand-ins into ``C/`` and ``D/`` there.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

SCRIPT = """\
#!{python}
import json, os, sys

here = os.path.dirname(os.path.realpath(__file__))
name = os.path.basename(sys.argv[0])
seen = {{k: os.environ.get(k) for k in ("PATH", "INCLUDE", "LIB", "VCENV_BAT")}}
record = {{"program": name, "args": sys.argv[1:], "env": seen}}
sys.stderr.write("STAND-IN " + json.dumps(record, sort_keys=True) + "\\n")
sys.stderr.flush()
for arg in sys.argv[1:]:
    recorded = os.path.join(here, os.path.basename(arg) + ".out")
    if os.path.exists(recorded):
        with open(recorded, "rb") as f:
            os.write(1, f.read())
        with open(os.path.join(here, os.path.basename(arg) + ".rc")) as f:
            sys.exit(int(f.read()))
"""

PROGRAMS = ("devenv.com", "msdev", "vcexpress", "msbuild", "%VCENV_BAT%")

# What Visual Studio 2017's devenv.com prints rebuilding a solution of two projects, one of
# which fails (paths shortened).
APP_SLN = [
    "Microsoft Visual Studio 2017 Version 15.9.28307.1321.",
    "Copyright (C) Microsoft Corp. All rights reserved.",
    "1>------ Rebuild All started: Project: zlib, Configuration: Release Win32 ------",
    "1>adler32.c",
    "1>gzlib.c",
    "1>c:\\src\\zlib\\gzlib.c(193): warning C4996: 'wcstombs': This function or variable may "
    "be unsafe. Consider using wcstombs_s instead.",
    "1>zlib.vcxproj -> C:\\src\\build\\Release\\zlib.lib",
    "2>------ Rebuild All started: Project: app, Configuration: Release Win32 ------",
    "2>main.cpp",
    "2>c:\\src\\app\\main.cpp(12): error C2065: 'undeclared': undeclared identifier",
    "2>c:\\src\\app\\main.cpp(14): warning C4244: '=': conversion from 'double' to 'int', "
    "possible loss of data",
    '2>Done building project "app.vcxproj" -- FAILED.',
    "========== Rebuild All: 1 succeeded, 1 failed, 0 skipped ==========",
]
# Visual C++ 6's msdev building one project, with a warning.
CORE_DSW = [
    "--------------------Configuration: core - Win32 Release--------------------",
    "Compiling...",
    "core.cpp",
    "D:\\src\\core.cpp(40) : warning C4101: 'unused' : unreferenced local variable",
    "Linking...",
    "",
    "core.dll - 0 error(s), 1 warning(s)",
]
# devenv.com cleaning one project.
LIB_SLN = [
    "1>------ Clean started: Project: lib, Configuration: Debug x64 ------",
    "========== Clean: 1 succeeded, 0 failed, 0 skipped ==========",
]
# msbuild building one project of a solution.
MS_SLN = [
    "Microsoft (R) Build Engine version 4.8.3761.0",
    'Project "C:\\src\\ms.sln" on node 1 (app:Build target(s)).',
    "ClCompile:",
    "  main.cpp",
    "Build succeeded.",
    "    0 Warning(s)",
    "    0 Error(s)",
]
RECORDED = {"app.sln": (APP_SLN, 1), "core.dsw": (CORE_DSW, 0), "lib.sln": (LIB_SLN, 0)}
RECORDED["ms.sln"] = (MS_SLN, 0)


def write_standin(directory: Path) -> Path:
    """The stand-in script and its recorded outputs in ``directory``; the script's path."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "standin.py"
    script.write_text(SCRIPT.format(python=sys.executable))
    script.chmod(0o755)
    for name, (lines, rc) in RECORDED.items():
        (directory / f"{name}.out").write_bytes("".join(f"{line}\r\n" for line in lines).encode())
        (directory / f"{name}.rc").write_text(str(rc))
    return script


def factory(script: Path) -> str:
    """master.cfg lines defining ``f``, a BuildFactory of the Visual Studio steps (in Buildbot's
    vocabulary: ``steps`` from ``buildbot.plugins`` and the import ainakan-ci makes)."""
    links = " && ".join(
        f"ln -sf {shlex.quote(str(script))} {d}/{shlex.quote(p)}" for p in PROGRAMS for d in "CD"
    )
    return f"""
from buildbot.steps.vstudio import VS2017 as VS2022
f = util.BuildFactory()
f.addStep(steps.ShellCommand(name='stand-ins',
                             command=['sh', '-c', 'mkdir -p C D && ' + {links!r}]))
f.addStep(VS2022(name='vs2017', installdir=r'C:\\VS', mode='rebuild', projectfile=r'app.sln',
                 config='Release|Win32', description='compiling Release|Win32',
                 descriptionDone='compile Release|Win32'))
f.addStep(steps.VC6(name='vc6', projectfile='core.dsw', project='core', mode='build',
                    config='Win32 Release', INCLUDE=[r'C:\\inc']))
f.addStep(steps.VS2005(name='vc8', projectfile='lib.sln', mode='clean', arch='x64', useenv=True,
                       project='lib', config='Debug', env={{'PATH': r'D:\\first'}}))
f.addStep(steps.MsBuild('Win32', name='msbuild4', projectfile='ms.sln', config='Release',
                        project='app', mode='build', defines=['A', 'B'], PATH=[r'C:\\Tools']))
f.addStep(steps.MsBuild17('x64', name='msbuild17', projectfile='ms.sln'))
"""


def records(stdio: str) -> list[dict[str, Any]]:
    """The stand-ins' records in a stored stdio log (lines keep their stream letter)."""
    return [
        json.loads(line[len("eSTAND-IN ") :])
        for line in stdio.splitlines()
        if line.startswith("eSTAND-IN ")
    ]


def without_worker_path(value: str | None, worker_path: str) -> str | None:
    """``value`` with the worker's own PATH (what ``${PATH}`` became) put back as ``${PATH}``."""
    return None if value is None else value.replace(worker_path, "${PATH}")


#: the command and environment each step's program got, as Buildbot 4.3.0's steps make them
#: (``${PATH}`` standing for the worker's PATH; the worker expands ``${VS110COMNTOOLS}``,
#: unset here, to nothing)
VS = r"C:\VS"
VC6 = r"C:\Program Files\Microsoft Visual Studio"
VC8 = r"C:\Program Files\Microsoft Visual Studio 8"
EXPECTED: dict[str, list[dict[str, Any]]] = {
    "vs2017": [
        {
            "program": "devenv.com",
            "args": ["app.sln", "/Rebuild", "Release|Win32"],
            "env": {
                "PATH": f"{VS}\\Common7\\IDE;{VS}\\VC\\BIN;{VS}\\Common7\\Tools;"
                f"{VS}\\Common7\\Tools\\bin;{VS}\\VC\\PlatformSDK\\bin;{VS}\\SDK\\v2.0\\bin;"
                f"{VS}\\VC\\VCPackages;${{PATH}};",
                "INCLUDE": f"{VS}\\VC\\INCLUDE;{VS}\\VC\\ATLMFC\\include;"
                f"{VS}\\VC\\PlatformSDK\\include;",
                "LIB": f"{VS}\\VC\\LIB;{VS}\\VC\\ATLMFC\\LIB;{VS}\\VC\\PlatformSDK\\lib;"
                f"{VS}\\SDK\\v2.0\\lib;",
                "VCENV_BAT": None,
            },
        }
    ],
    "vc6": [
        {
            "program": "msdev",
            "args": ["core.dsw", "/MAKE", "core - Win32 Release", "/BUILD", "/USEENV"],
            "env": {
                "PATH": f"{VC6}\\Common\\msdev98\\BIN;{VC6}\\VC98\\BIN;"
                f"{VC6}\\Common\\TOOLS\\WINNT;{VC6}\\Common\\TOOLS;",
                "INCLUDE": f"C:\\inc;{VC6}\\VC98\\INCLUDE;{VC6}\\VC98\\ATL\\INCLUDE;"
                f"{VC6}\\VC98\\MFC\\INCLUDE;",
                "LIB": f"{VC6}\\VC98\\LIB;{VC6}\\VC98\\MFC\\LIB;",
                "VCENV_BAT": None,
            },
        }
    ],
    "vc8": [
        {
            "program": "devenv.com",
            "args": ["lib.sln", "/Clean", "Debug", "/UseEnv", "/Project", "lib"],
            "env": {
                "PATH": f"D:\\first;{VC8}\\Common7\\IDE;{VC8}\\VC\\BIN\\x86_amd64;{VC8}\\VC\\BIN;"
                f"{VC8}\\Common7\\Tools;{VC8}\\Common7\\Tools\\bin;{VC8}\\VC\\PlatformSDK\\bin;"
                f"{VC8}\\SDK\\v2.0\\bin;{VC8}\\VC\\VCPackages;${{PATH}};",
                "INCLUDE": f"{VC8}\\VC\\INCLUDE;{VC8}\\VC\\ATLMFC\\include;"
                f"{VC8}\\VC\\PlatformSDK\\include;",
                "LIB": f"{VC8}\\VC\\LIB\\amd64;{VC8}\\VC\\ATLMFC\\LIB\\amd64;"
                f"{VC8}\\VC\\PlatformSDK\\lib\\amd64;{VC8}\\SDK\\v2.0\\lib\\amd64;",
                "VCENV_BAT": None,
            },
        }
    ],
    "msbuild4": [
        {
            "program": "%VCENV_BAT%",
            "args": ["x86"],
            "env": {
                "PATH": "C:\\Tools;",
                "INCLUDE": None,
                "LIB": None,
                "VCENV_BAT": "..\\..\\VC\\vcvarsall.bat",
            },
        },
        {
            "program": "msbuild",
            "args": [
                "ms.sln",
                "/p:Configuration=Release",
                "/p:Platform=Win32",
                "/maxcpucount",
                "/t:app:Build",
                "/p:DefineConstants=A;B",
            ],
            "env": {
                "PATH": "C:\\Tools;",
                "INCLUDE": None,
                "LIB": None,
                "VCENV_BAT": "..\\..\\VC\\vcvarsall.bat",
            },
        },
    ],
}
#: what the MsBuild17 step asks cmd.exe to run (a POSIX shell cannot)
MSBUILD17 = (
    'FOR /F "tokens=*" %%I in (\'vswhere.exe -version "[17.0,18.0)" -products * '
    '-property installationPath\')  do "%%I\\%VCENV_BAT%" x86 && msbuild "ms.sln" '
    '/p:Configuration="release" /p:Platform="x64" /maxcpucount /t:Rebuild'
)
