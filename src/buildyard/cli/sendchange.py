"""``buildyard sendchange``: send one change to a master's PB change source
(``changes.PBChangeSource``), as ``buildbot sendchange`` does, with its options.

Exit codes: 0 the change was sent; 1 it was not (the master refused the login or the change,
or could not be reached: the reason is printed); 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Sequence
from typing import Any

VCS = ("cvs", "svn", "darcs", "hg", "bzr", "git", "mtn", "p4")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--master", required=True, help="the PBChangeSource's HOST:PORT")
    p.add_argument(
        "-a",
        "--auth",
        default="change:changepw",
        help="USER:PASSWORD, or USER to be asked for the password (default: change:changepw)",
    )
    p.add_argument("-W", "--who", required=True, help="author of the commit")
    p.add_argument("-R", "--repository", default="", help="repository specifier")
    p.add_argument("-s", "--vc", choices=VCS, help="the version control system")
    p.add_argument("-P", "--project", default="", help="project specifier")
    p.add_argument("-b", "--branch", help="branch specifier")
    p.add_argument("-C", "--category", help="category of the change")
    p.add_argument("--codebase", help="codebase of the change")
    p.add_argument("-r", "--revision", help="revision specifier")
    p.add_argument("--revision_file", "--revision-file", help="file holding the revision")
    p.add_argument(
        "-p",
        "--property",
        action="append",
        default=[],
        metavar="NAME:VALUE",
        help="a property of the change (repeatable)",
    )
    p.add_argument("-c", "--comments", help="log message")
    p.add_argument("-F", "--logfile", help="read the log message from this file (- for stdin)")
    p.add_argument("-w", "--when", help="the change's time, as a Unix timestamp")
    p.add_argument("-l", "--revlink", default="", help="revision link")
    p.add_argument("-e", "--encoding", default="utf8", help="encoding of the files read")
    p.add_argument("files", nargs="*", help="the files changed")


class UsageError(Exception):
    pass


def read_change(args: argparse.Namespace) -> tuple[str, int, str, str, dict[str, Any]]:
    """(host, port, user, password, change dict); UsageError naming what is wrong."""
    host, sep, port_text = str(args.master).rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"--master must be HOST:PORT, not {args.master!r}")
    user, sep, password = str(args.auth).partition(":")
    if not user:
        raise UsageError(f"--auth must be USER:PASSWORD or USER, not {args.auth!r}")
    if not sep:
        password = getpass.getpass(f"Enter password for '{user}': ")
    properties: dict[str, str] = {}
    for prop in args.property:
        name, sep, value = str(prop).partition(":")
        if not sep or not name:
            raise UsageError(f"--property must be NAME:VALUE, not {prop!r}")
        properties[name] = value
    revision = args.revision
    try:
        if args.revision_file:
            with open(args.revision_file, encoding=args.encoding) as f:
                revision = f.read()
        comments = args.comments
        if comments is None and args.logfile:
            if args.logfile == "-":
                comments = sys.stdin.read()
            else:
                with open(args.logfile, encoding=args.encoding) as f:
                    comments = f.read()
    except (OSError, LookupError, UnicodeDecodeError) as exc:
        raise UsageError(str(exc)) from None
    when = None
    if args.when:
        try:
            when = float(args.when)
        except ValueError:
            raise UsageError(f"invalid 'when' value {args.when}") from None
    change: dict[str, Any] = {
        "project": args.project,
        "repository": args.repository,
        "who": args.who,
        "files": list(args.files),
        "comments": comments or "",
        "branch": args.branch,
        "revision": revision,
        "category": args.category,
        "when": when,
        "properties": properties,
        "revlink": args.revlink,
        "src": args.vc,
    }
    if args.codebase:
        change["codebase"] = args.codebase
    return host, int(port_text), user, password, change


async def send(host: str, port: int, user: str, password: str, change: dict[str, Any]) -> None:
    from buildyard.protocol.portal import PbClient

    client = await PbClient.login(host, port, user, password)
    try:
        await client.perspective.call("addChange", change)
    finally:
        await client.close()


def cmd_sendchange(args: argparse.Namespace) -> int:
    from buildyard.protocol.errors import ConnectionLost, ProtocolError, RemoteError

    try:
        host, port, user, password, change = read_change(args)
    except UsageError as exc:
        print(f"buildyard sendchange: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(send(host, port, user, password, change))
    except ConnectionRefusedError:
        print(f"change not sent: nothing listens at {host}:{port}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError, ConnectionLost, ProtocolError, RemoteError) as exc:
        print(f"change not sent: {str(exc) or type(exc).__name__}", file=sys.stderr)
        return 1
    print("change sent successfully")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="buildyard sendchange")
    add_arguments(parser)
    return cmd_sendchange(parser.parse_args(argv))
