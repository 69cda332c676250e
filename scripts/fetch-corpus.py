#!/usr/bin/env python3
"""Fetch and measure the corpus of real-world Buildbot master.cfg files (tests/corpus/corpus.toml).

The corpus holds only references (repository, commit, the directory that is the master's
basedir) and the stand-in files each master needs to load (its passwords file, a secrets
directory, ...); the files themselves are other people's code under their own licences and are
never committed here. This script brings them into a cache directory:

    scripts/fetch-corpus.py fetch            # every entry, from GitHub (needs the network)
    scripts/fetch-corpus.py fetch --git-mirror '/srv/mirrors/{owner}+{name}.git'
                                             # or from local git repositories holding the commits
    scripts/fetch-corpus.py measure          # checkconfig (stock Buildbot and buildyard), then
                                             # start each with a stock worker; prints a table

Each entry becomes CACHE/ID/ (CACHE: $BUILDYARD_CORPUS_DIR, default ~/.cache/buildyard/corpus):
``tree/`` the repository at the commit, its stand-ins applied in the entry's directory (the
master's basedir), ``site/`` the extra PyPI packages it imports
(``pip install --target``; put on PYTHONPATH for both masters), ``ready.json`` what was done.

Exit status of ``fetch``: 0 all fetched, 3 when the network (GitHub or PyPI) cannot be reached,
1 for any other failure.
"""

from __future__ import annotations

import argparse
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORPUS_TOML = ROOT / "tests" / "corpus" / "corpus.toml"
DEFAULT_CACHE = Path.home() / ".cache" / "buildyard" / "corpus"
ARCHIVE_URL = "https://codeload.github.com/{repo}/tar.gz/{commit}"
NETWORK_CLOSED = 3


class NetworkClosed(RuntimeError):
    """GitHub or PyPI cannot be reached from here."""


@dataclass(frozen=True)
class Entry:
    """One master.cfg of the corpus, as corpus.toml describes it."""

    id: str
    repo: str
    commit: str
    dir: str = ""
    config: str = "master.cfg"
    remove: tuple[str, ...] = ()
    copy: Mapping[str, str] = field(default_factory=dict)
    write: Mapping[str, str] = field(default_factory=dict)
    mkdir: tuple[str, ...] = ()
    private: tuple[str, ...] = ()
    symlink: Mapping[str, str] = field(default_factory=dict)
    pip: tuple[str, ...] = ()
    pip_no_deps: tuple[str, ...] = ()
    pythonpath: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    expect: Mapping[str, str] = field(default_factory=dict)
    note: str = ""


def load_corpus(path: Path = CORPUS_TOML) -> list[Entry]:
    data = tomllib.loads(path.read_text())
    entries = []
    for table in data["config"]:
        raw = dict(table)
        for key in ("remove", "mkdir", "private", "pip", "pip_no_deps", "pythonpath"):
            raw[key] = tuple(raw.get(key, ()))
        entries.append(Entry(**raw))
    ids = [e.id for e in entries]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ValueError(f"{path}: ids used twice: {sorted(dupes)}")
    return entries


def cache_dir() -> Path:
    return Path(os.environ.get("BUILDYARD_CORPUS_DIR") or DEFAULT_CACHE)


# -- fetching --------------------------------------------------------------------------------


def _extract(archive: bytes, dest: Path, *, strip: int) -> None:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = []
        for member in tar.getmembers():
            parts = Path(member.name).parts[strip:]
            if not parts:
                continue
            member.name = str(Path(*parts))
            members.append(member)
        tar.extractall(dest, members=members, filter="data")


def _from_github(entry: Entry) -> bytes:
    url = ARCHIVE_URL.format(repo=entry.repo, commit=entry.commit)
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            data: bytes = resp.read()
            return data
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"{entry.id}: {url} answered {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise NetworkClosed(f"{entry.id}: cannot reach {url}: {exc}") from exc


def _from_git(entry: Entry, pattern: str) -> bytes:
    owner, name = entry.repo.split("/")
    git_dir = Path(pattern.format(owner=owner, name=name))
    if (git_dir / ".git").is_dir():
        git_dir = git_dir / ".git"
    # only the parts the master uses: a mirror may lack the repository's large files
    parts = {entry.dir or ".", *entry.pythonpath, *entry.copy.values()}
    paths = [] if "." in parts else sorted(parts)
    done = subprocess.run(
        ["git", "--git-dir", str(git_dir), "archive", "--format=tar", entry.commit, *paths],
        capture_output=True,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{entry.id}: git archive in {git_dir}: {done.stderr.decode()[-500:]}")
    return done.stdout


def _pip(entry: Entry, site: Path) -> None:
    for packages, extra in ((entry.pip, []), (entry.pip_no_deps, ["--no-deps"])):
        if not packages:
            continue
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--target",
                str(site),
                *extra,
                *packages,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        if done.returncode != 0:
            text = done.stderr[-1500:]
            if "NewConnectionError" in text or "Temporary failure" in text or "No matching" in text:
                raise NetworkClosed(f"{entry.id}: pip install {' '.join(packages)}: {text}")
            raise RuntimeError(f"{entry.id}: pip install {' '.join(packages)}: {text}")


def master_dir(entry: Entry, tree: Path | None = None) -> Path:
    """The master's basedir: the entry's directory inside the tree (so that the paths it uses
    relative to itself, such as ``../passwords.json``, lead where they lead in its repository)."""
    tree = cache_dir() / entry.id / "tree" if tree is None else tree
    return tree / entry.dir if entry.dir else tree


def prepare_master(entry: Entry, tree: Path) -> None:
    """Apply the entry's stand-ins to its basedir in the tree."""
    master = master_dir(entry, tree)
    for name in entry.remove:
        target = master / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    for name in entry.mkdir:
        (master / name).mkdir(parents=True, exist_ok=True)
    for dest, source in entry.copy.items():
        # the source names a file of the repository (from its root), copied into the basedir
        (master / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tree / source, master / dest)
    for dest, text in entry.write.items():
        (master / dest).parent.mkdir(parents=True, exist_ok=True)
        (master / dest).write_text(text)
    for name in entry.private:
        (master / name).chmod(0o600)
    for dest, target in entry.symlink.items():
        (master / dest).unlink(missing_ok=True)
        (master / dest).symlink_to(target)


def fetch(entry: Entry, *, git_mirror: str | None, force: bool = False) -> Path:
    where = cache_dir() / entry.id
    stamp = where / "ready.json"
    wanted = {"repo": entry.repo, "commit": entry.commit, "entry": repr(entry)}
    if not force and stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return where
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    archive = _from_git(entry, git_mirror) if git_mirror else _from_github(entry)
    _extract(archive, where / "tree", strip=0 if git_mirror else 1)
    prepare_master(entry, where / "tree")
    (where / "site").mkdir()
    _pip(entry, where / "site")
    stamp.write_text(json.dumps(wanted))
    return where


def fetch_all(entries: list[Entry], *, git_mirror: str | None) -> dict[str, str]:
    """Fetch every entry; returns the ones that failed, with why. Raises NetworkClosed when the
    first one cannot reach the network (the rest would not either)."""
    failed = {}
    cache_dir().mkdir(parents=True, exist_ok=True)
    # one fetch at a time (parallel test workers share the cache)
    with (cache_dir() / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for entry in entries:
            try:
                fetch(entry, git_mirror=git_mirror)
            except NetworkClosed:
                raise
            except Exception as exc:  # reported per entry
                failed[entry.id] = str(exc)
    return failed


def is_fetched(entry: Entry) -> bool:
    return (cache_dir() / entry.id / "ready.json").exists()


# -- measuring -------------------------------------------------------------------------------


def stock_venv() -> Path:
    return Path(
        os.environ.get("BUILDYARD_BUILDBOT_VENV")
        or Path.home() / ".cache" / "buildyard" / "buildbot-4.3.0"
    )


def entry_env(entry: Entry, extra_path: str = "", tree: Path | None = None) -> dict[str, str]:
    """The environment both masters run in: the entry's variables, and on PYTHONPATH the
    directories of the repository it names (as its deployment has them) and its PyPI packages."""
    where = cache_dir() / entry.id
    tree = where / "tree" if tree is None else tree
    env = {**os.environ, **entry.env}
    paths = [str(tree / p) for p in entry.pythonpath] + [str(where / "site")]
    if extra_path:
        paths.insert(0, extra_path)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _last_lines(text: str, n: int = 6) -> str:
    return "\n".join(line for line in text.strip().splitlines()[-n:])


def stock_checkconfig(entry: Entry) -> tuple[bool, str]:
    master = master_dir(entry)
    done = subprocess.run(
        [str(stock_venv() / "bin" / "buildbot"), "checkconfig", "."],
        cwd=master,
        env=entry_env(entry),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    out = done.stdout + done.stderr
    return done.returncode == 0 and "Config file is good!" in out, _last_lines(out)


def buildyard_checkconfig(entry: Entry, src: Path | None = None) -> tuple[bool, str]:
    master = master_dir(entry)
    env = entry_env(entry, str(src) if src else "")
    done = subprocess.run(
        [sys.executable, "-m", "buildyard.cli.main", "checkconfig", str(master)],
        cwd=master,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    return done.returncode == 0, done.stdout + done.stderr


# What stock Buildbot makes of the configuration: the workers a stock worker can be (not
# latent), their passwords, the protocols. Run in the stock venv; printed as JSON.
_STOCK_WORKERS = r"""
import json, sys
from buildbot.config.master import FileLoader
from buildbot.worker.latent import AbstractLatentWorker
from buildbot.worker.local import LocalWorker
config = FileLoader(sys.argv[1], "master.cfg").loadConfig()
workers = [
    {"name": w.workername, "password": w.password if isinstance(w.password, str) else None,
     "latent": isinstance(w, AbstractLatentWorker), "local": isinstance(w, LocalWorker)}
    for w in config.workers
]
print(json.dumps({"workers": workers, "protocols": sorted(config.protocols)}))
"""


def stock_workers(entry: Entry) -> dict[str, Any]:
    master = master_dir(entry)
    done = subprocess.run(
        [str(stock_venv() / "bin" / "python"), "-c", _STOCK_WORKERS, str(master)],
        cwd=master,
        env=entry_env(entry),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(f"stock Buildbot could not list the workers: {done.stderr[-800:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _free_port() -> int:
    # the tests' helper: a port below the ephemeral range, free on 127.0.0.1 now
    from buildyard.testing.postgres import free_port

    return free_port()


# Appended to a copy of master.cfg before it is started: the ports it listens on become free
# loopback ports (its own may be taken on a shared machine), and its database a SQLite file in
# the copy (it may name a server that is not here). Nothing else is changed.
PORT_REWRITE = """
# --- appended by buildyard's corpus harness: loopback ports and a local database
_c = BuildmasterConfig
_c['protocols'] = {{_k: dict(_v or {{}}, port='tcp:{pb}:interface=127.0.0.1')
                   for _k, _v in (_c.get('protocols') or {{'pb': {{}}}}).items()}}
if isinstance(_c.get('www'), dict):
    _c['www'] = dict(_c['www'], port='tcp:{www}:interface=127.0.0.1')
_c.pop('db_url', None)
_c['db'] = {{'db_url': 'sqlite:///state.sqlite'}}
"""


@dataclass
class WorkerResult:
    connected: bool
    detail: str


def start_with_worker(entry: Entry, workdir: Path, *, timeout: float = 90) -> WorkerResult:
    """Start the master under buildyard (ports and database as :data:`PORT_REWRITE` says) and
    connect a stock buildbot-worker 4.3.0 as its first non-latent worker, with its protocol."""
    info = stock_workers(entry)
    plain = [
        w
        for w in info["workers"]
        if not w["latent"] and not w["local"] and w["password"] is not None
    ]
    local = [w for w in info["workers"] if w["local"]]
    if not plain and not local:
        return WorkerResult(False, "no non-latent worker with a plain password to connect")
    protocol = info["protocols"][0] if info["protocols"] else "pb"
    # a master whose workers are all LocalWorkers runs them itself: wait for the first
    worker = plain[0] if plain else local[0]
    tree = workdir / "tree"
    shutil.copytree(cache_dir() / entry.id / "tree", tree, symlinks=True)
    master = master_dir(entry, tree)
    pb, www = _free_port(), _free_port()
    with (master / "master.cfg").open("a") as cfg:
        cfg.write(PORT_REWRITE.format(pb=pb, www=www))
    env = entry_env(entry, str(ROOT / "src"), tree)
    cli = [sys.executable, "-m", "buildyard.cli.main"]
    upgraded = subprocess.run(
        [*cli, "upgrade-master", str(master)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if upgraded.returncode != 0:
        return WorkerResult(
            False, "upgrade-master: " + _last_lines(upgraded.stdout + upgraded.stderr)
        )
    with (workdir / "master.out").open("ab") as out:
        proc = subprocess.Popen(
            [*cli, "start", "--nodaemon", str(master)],
            cwd=master,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    worker_proc: subprocess.Popen[bytes] | None = None
    try:
        if not plain:
            return _wait_attached(proc, workdir, worker["name"], "its own LocalWorker", timeout)
        exe = str(stock_venv() / "bin" / "buildbot-worker")
        wdir = workdir / "worker"
        create = [exe, "create-worker"]
        if protocol == "msgpack_experimental_v7":
            create.append("--protocol=msgpack_experimental_v7")
        subprocess.run(
            [*create, str(wdir), f"127.0.0.1:{pb}", worker["name"], worker["password"]],
            check=True,
            capture_output=True,
            timeout=120,
        )
        with (workdir / "worker.out").open("ab") as out:
            worker_proc = subprocess.Popen(
                [exe, "start", "--nodaemon", str(wdir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        result = _wait_attached(proc, workdir, worker["name"], f"over {protocol}", timeout)
        if not result.connected:
            log = wdir / "twistd.log"
            wtext = log.read_text(errors="replace") if log.exists() else ""
            result.detail += f"; worker: {_last_lines(wtext, 5)}"
        return result
    finally:
        for p in (worker_proc, proc):
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def _wait_attached(
    proc: subprocess.Popen[bytes], workdir: Path, name: str, how: str, timeout: float
) -> WorkerResult:
    """Wait for the master's log line saying that worker ``name`` logged in and was attached."""
    deadline = time.monotonic() + timeout
    attached = f"worker={name}"
    text = ""
    while time.monotonic() < deadline:
        text = (workdir / "master.out").read_text(errors="replace")
        if proc.poll() is not None:
            return WorkerResult(False, "the master stopped: " + _last_lines(text, 10))
        if any("worker_attached" in line and attached in line for line in text.splitlines()):
            return WorkerResult(True, f"{name} {how}")
        time.sleep(0.5)
    return WorkerResult(
        False, f"no connection within {timeout:.0f}s; master: {_last_lines(text, 5)}"
    )


def measure(entry: Entry, *, worker: bool = True) -> dict[str, Any]:
    stock_ok, stock_out = stock_checkconfig(entry)
    by_ok, by_out = buildyard_checkconfig(entry, ROOT / "src")
    result: dict[str, Any] = {
        "id": entry.id,
        "buildbot_checkconfig": "pass" if stock_ok else "fail",
        "buildbot_output": stock_out,
        "buildyard_checkconfig": "pass" if by_ok else "fail",
        "buildyard_output": by_out,
    }
    if worker and by_ok and stock_ok:
        with tempfile.TemporaryDirectory(prefix=f"corpus-{entry.id}-") as tmp:
            started = start_with_worker(entry, Path(tmp))
        result["worker"] = "connects" if started.connected else "fail"
        result["worker_detail"] = started.detail
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fetch", help="fetch the corpus into the cache directory")
    p.add_argument("--git-mirror", help="pattern of local git dirs, with {owner} and {name}")
    p.add_argument("ids", nargs="*")
    p = sub.add_parser("measure", help="measure fetched entries; prints JSON lines")
    p.add_argument("--no-worker", action="store_true")
    p.add_argument("ids", nargs="*")
    args = parser.parse_args(argv)
    entries = load_corpus()
    if args.ids:
        entries = [e for e in entries if e.id in args.ids]
    if args.command == "fetch":
        try:
            failed = fetch_all(entries, git_mirror=args.git_mirror)
        except NetworkClosed as exc:
            print(f"network closed: {exc}", file=sys.stderr)
            return NETWORK_CLOSED
        for ident, why in failed.items():
            print(f"{ident}: {why}", file=sys.stderr)
        return 1 if failed else 0
    for entry in entries:
        if not is_fetched(entry):
            print(json.dumps({"id": entry.id, "missing": True}), flush=True)
            continue
        print(json.dumps(measure(entry, worker=not args.no_worker)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
