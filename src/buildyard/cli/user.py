"""``buildyard user``: add, update, remove and show users through a master's
``util.CommandlineUserManager``, as ``buildbot user`` does, with its options.

Exit codes: 0 done (the master's answer is printed); 1 the master could not be reached or
refused; 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
from typing import Any

from buildyard.cli.sendchange import UsageError

OPS = ("add", "remove", "update", "get")
# what --info may set: the identifier, an email, and one identity per version-control system
INFO_TYPES = ("identifier", "email", "git", "svn", "hg", "cvs", "darcs", "bzr", "fossil")
_SALT_BYTES = 8


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--master", help="the user manager's HOST:PORT")
    p.add_argument("-u", "--username", help="user name for the PB login")
    p.add_argument("-p", "--passwd", help="password for the PB login")
    p.add_argument("--op", help="the operation: add, remove, update or get")
    p.add_argument("--bb_username", help="web login to set (update only, with --bb_password)")
    p.add_argument("--bb_password", help="web password to set (update only, with --bb_username)")
    p.add_argument(
        "--ids",
        action="append",
        default=[],
        help="identifiers of the users to remove or get (ID1,ID2,...; repeatable)",
    )
    p.add_argument(
        "--info",
        action="append",
        default=[],
        help="TYPE=VALUE,TYPE=VALUE,... for add; ID:TYPE=VALUE,... for update (repeatable)",
    )


def parse_info(option: str) -> dict[str, str]:
    """One --info value as the map Buildbot's client sends."""
    items = option.split(",")
    if len(items) == 1 and "=" not in items[0]:
        return {"identifier": items[0]}
    entry: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--info items must be TYPE=VALUE, not {item!r}")
        if ":" in key:
            entry["identifier"], _, key = key.partition(":")
        entry[key] = value
    return entry


def hash_password(password: str) -> str:
    """Buildbot's stored form of a web password: a random salt (hex) then the sha1 of the
    password followed by that salt."""
    salt = os.urandom(_SALT_BYTES).hex()
    return salt + hashlib.sha1(password.encode() + salt.encode()).hexdigest()


def read_request(
    args: argparse.Namespace,
) -> tuple[str, int, str, str, tuple[Any, ...]]:
    """(host, port, login, password, the commandline call's arguments); UsageError naming
    what is wrong, checked as Buildbot checks it."""
    if not args.master:
        raise UsageError("--master HOST:PORT is required")
    host, sep, port_text = str(args.master).rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"--master must be HOST:PORT, not {args.master!r}")
    op = args.op
    if not op:
        raise UsageError("you must specify an operation: --op add, remove, update or get")
    if op not in OPS:
        raise UsageError(f"bad op {op!r}, use 'add', 'remove', 'update' or 'get'")
    if not args.username or not args.passwd:
        raise UsageError("a username and password must be given (--username, --passwd)")
    bb_username, bb_password = args.bb_username, args.bb_password
    if bb_username or bb_password:
        if op != "update":
            raise UsageError("--bb_username and --bb_password only work with update")
        if not bb_username or not bb_password:
            raise UsageError("give both --bb_username and --bb_password, or neither")
        bb_password = hash_password(bb_password)
    ids = [i for option in args.ids for i in option.split(",")]
    info = [parse_info(option) for option in args.info]
    if not info and not ids:
        raise UsageError("give --ids or --info")
    if op in ("add", "update"):
        if ids:
            raise UsageError(f"--ids does not go with {op!r}")
        for entry in info:
            bad = sorted(k for k in entry if k not in INFO_TYPES)
            if bad:
                raise UsageError(f"--info type {bad[0]!r} is not one of: {', '.join(INFO_TYPES)}")
            if op == "update" and "identifier" not in entry:
                raise UsageError("update needs the user: --info=ID:TYPE=VALUE,...")
            if op == "add" and "identifier" in entry:
                raise UsageError("add takes no identifier: --info=TYPE=VALUE,...")
        if op == "add":  # as Buildbot's client: the smallest value names the new user
            for entry in info:
                entry["identifier"] = sorted(entry.values())[0]
    elif info:
        raise UsageError(f"--info does not go with {op!r}")
    call = (op, bb_username, bb_password, ids or None, info or None)
    return host, int(port_text), args.username, args.passwd, call


async def send(host: str, port: int, login: str, password: str, call: tuple[Any, ...]) -> Any:
    from buildyard.protocol.portal import PbClient

    client = await PbClient.login(host, port, login, password)
    try:
        return await client.perspective.call("commandline", *call)
    finally:
        await client.close()


def cmd_user(args: argparse.Namespace) -> int:
    from buildyard.protocol.errors import ConnectionLost, ProtocolError, RemoteError

    try:
        host, port, login, password, call = read_request(args)
    except UsageError as exc:
        print(f"buildyard user: {exc}", file=sys.stderr)
        return 2
    try:
        answer = asyncio.run(send(host, port, login, password, call))
    except ConnectionRefusedError:
        print(f"buildyard user: nothing listens at {host}:{port}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError, ConnectionLost, ProtocolError, RemoteError) as exc:
        print(f"buildyard user: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return 1
    if answer:
        print(answer.decode() if isinstance(answer, bytes) else answer)
    return 0
