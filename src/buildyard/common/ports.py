"""Buildbot's port spellings: a number, or a strports string (Twisted's endpoint syntax).

``tcp:PORT`` (or ``tcp:port=PORT``) with ``interface=ADDR`` and ``backlog=N``; where the caller
allows them (the web server), ``ssl:PORT`` with ``privateKey=``, ``certKey=`` (the private
key's file when not given), ``extraCertChain=`` and ``dhParameters=`` besides ``tcp``'s options,
and ``unix:PATH`` (or ``unix:address=PATH``) with ``mode=`` (octal), ``lockfile=0|1`` and
``backlog=``. A backslash escapes a ``:`` or ``=`` in a value (``unix:C\\:/x`` is ``C:/x``).
An option that is not one of these is refused by name, never ignored.

Shared by the config checks (so checkconfig catches a bad port) and the servers that listen.
:func:`bind` takes an address before anything serves on it, so a reconfiguration can hold
every new port it needs before it changes anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import ssl
import stat
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path


@dataclasses.dataclass(frozen=True, slots=True)
class TLSFiles:
    """The files of an ``ssl:`` endpoint."""

    private_key: str
    cert: str
    extra_chain: str | None = None
    dh_params: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Listen:
    # None: every interface
    host: str | None
    port: int
    # the socket file of a unix: endpoint (port is then 0, host None)
    unix: str | None = None
    # unix: the socket file's permissions; lockfile: Buildbot's option, see parse_port
    mode: int | None = None
    backlog: int | None = None
    tls: TLSFiles | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"


_TCP_OPTIONS = {"interface", "backlog"}
_SSL_OPTIONS = _TCP_OPTIONS | {"privateKey", "certKey", "extraCertChain", "dhParameters"}
_UNIX_OPTIONS = {"mode", "lockfile", "backlog"}
_EXPECTED = "a number or 'tcp:PORT[:interface=ADDR]'"


def _split(spec: str) -> list[str]:
    """``spec`` cut at its unescaped colons, the escapes removed."""
    parts, current, escaped = [], [], False
    for char in spec:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _options(spec: str, parts: list[str], allowed: set[str], positional: str) -> dict[str, str]:
    """The ``key=value`` options of a strports string; the first may be bare (``positional``)."""
    options: dict[str, str] = {}
    for index, part in enumerate(parts):
        key, sep, value = part.partition("=")
        if not sep:
            if index != 0:
                raise ValueError(f"port {spec!r}: {part!r} is not a KEY=VALUE option")
            key, value = positional, part
        elif key not in allowed | {positional}:
            raise ValueError(
                f"port {spec!r}: unknown option {key!r} (known: {', '.join(sorted(allowed))})"
            )
        if key in options:
            raise ValueError(f"port {spec!r}: option {key!r} given twice")
        options[key] = value
    return options


def _number(spec: str, what: str, value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"port {spec!r}: {what} {value!r} is not a number")
    return int(value)


def parse_port(spec: object, *, allow: Collection[str] = ("tcp",)) -> Listen:
    """Where ``spec`` says to listen; ValueError naming the problem otherwise. ``allow``: the
    endpoint kinds the caller serves (``tcp``, ``ssl``, ``unix``)."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        listen = Listen(host=None, port=spec)
    elif isinstance(spec, str) and spec.isdigit():
        listen = Listen(host=None, port=int(spec))
    elif isinstance(spec, str) and ":" in spec:
        kind, *parts = _split(spec)
        if kind not in ("tcp", "ssl", "unix"):
            raise ValueError(f"port {spec!r}: unknown endpoint {kind!r}; expected {_EXPECTED}")
        if kind not in allow:
            raise ValueError(
                f"port {spec!r}: {kind!r} endpoints are not served here (only "
                f"{', '.join(repr(a) for a in allow)})"
            )
        listen = _endpoint(spec, kind, parts)
    else:
        raise ValueError(f"port {spec!r}: expected {_EXPECTED}")
    if listen.unix is None and not 0 <= listen.port <= 65535:
        raise ValueError(f"port {spec!r}: {listen.port} is not between 0 and 65535")
    return listen


def _endpoint(spec: str, kind: str, parts: list[str]) -> Listen:
    if kind == "unix":
        options = _options(spec, parts, _UNIX_OPTIONS, "address")
        path = options.get("address")
        if not path:
            raise ValueError(f"port {spec!r}: a socket path is required ('unix:PATH')")
        mode = None
        if "mode" in options:
            try:
                mode = int(options["mode"], 8)
            except ValueError:
                raise ValueError(
                    f"port {spec!r}: mode {options['mode']!r} is not an octal number"
                ) from None
        if options.get("lockfile", "0") not in ("0", "1"):
            raise ValueError(f"port {spec!r}: lockfile must be 0 or 1")
        backlog = _number(spec, "backlog", options["backlog"]) if "backlog" in options else None
        return Listen(host=None, port=0, unix=path, mode=mode, backlog=backlog)
    options = _options(spec, parts, _SSL_OPTIONS if kind == "ssl" else _TCP_OPTIONS, "port")
    if "port" not in options:
        raise ValueError(f"port {spec!r}: a port number is required")
    port = _number(spec, "port", options["port"])
    host = options.get("interface") or None
    if "interface" in options and not host:
        raise ValueError(f"port {spec!r}: interface is empty")
    backlog = _number(spec, "backlog", options["backlog"]) if "backlog" in options else None
    tls = None
    if kind == "ssl":
        key = options.get("privateKey")
        if not key:
            raise ValueError(f"port {spec!r}: 'ssl' needs privateKey=FILE (and certKey=FILE)")
        tls = TLSFiles(
            private_key=key,
            cert=options.get("certKey") or key,
            extra_chain=options.get("extraCertChain"),
            dh_params=options.get("dhParameters"),
        )
    return Listen(host=host, port=port, backlog=backlog, tls=tls)


def msgpack_listen(options: Mapping[str, object]) -> Listen:
    """Where the worker listener of ``c['protocols']['msgpack_experimental_v7']`` listens.

    ``port`` is required (a number or ``tcp:PORT[:interface=ADDR]``); an ``interface`` key
    names the address too.
    """
    if "port" not in options:
        raise ValueError("a 'port' is required")
    listen = parse_port(options["port"])
    interface = options.get("interface")
    if interface is not None:
        if not isinstance(interface, str) or not interface:
            raise ValueError(f"interface {interface!r} must be an address")
        listen = dataclasses.replace(listen, host=interface)
    return listen


def tls_context(tls: TLSFiles) -> ssl.SSLContext:
    """The server side TLS context of an ``ssl:`` endpoint; OSError or ssl.SSLError naming the
    file when one cannot be read."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if tls.extra_chain is None:
        context.load_cert_chain(tls.cert, tls.private_key)
    else:
        # the certificate, then the chain that leads to it, in one file as OpenSSL wants it
        combined = Path(tls.cert).read_bytes().rstrip(b"\n") + b"\n"
        combined += Path(tls.extra_chain).read_bytes()
        with tempfile.NamedTemporaryFile(prefix="buildyard-chain-", suffix=".pem") as chain:
            chain.write(combined)
            chain.flush()
            context.load_cert_chain(chain.name, tls.private_key)
    if tls.dh_params is not None:
        context.load_dh_params(tls.dh_params)
    return context


def _remove_stale_socket(path: str) -> None:
    """A socket file that no server answers on (left by a master that was killed) is removed;
    a live one is left, so binding fails with "address in use"."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    except OSError:
        pass
    finally:
        probe.close()


def bind(listen: Listen) -> socket.socket:
    """A listening, non-blocking socket on ``listen`` (every interface, IPv4 and IPv6 where the
    system can, when its host is None); OSError if the address cannot be had. The caller owns
    it: a server started on it (``loop.create_server(sock=...)``) closes it when it stops."""
    backlog = listen.backlog  # None: the system's default
    if listen.unix is not None:
        _remove_stale_socket(listen.unix)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(listen.unix)
            if listen.mode is not None:
                os.chmod(listen.unix, listen.mode)
            sock.listen(*([] if backlog is None else [backlog]))
        except BaseException:
            sock.close()
            raise
    elif listen.host is None:
        if socket.has_dualstack_ipv6():
            sock = socket.create_server(
                ("", listen.port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=backlog
            )
        else:
            sock = socket.create_server(("", listen.port), backlog=backlog)
    else:
        infos = socket.getaddrinfo(
            listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = infos[0]
        sock = socket.create_server(address[:2], family=family, backlog=backlog)
    sock.setblocking(False)
    return sock


def remove_socket_file(listen: Listen) -> None:
    """Remove a unix: endpoint's socket file, once its server has stopped."""
    if listen.unix is not None:
        with contextlib.suppress(OSError):
            os.unlink(listen.unix)
