"""Buildbot's port spellings: a number, or a strports string ``tcp:PORT[:interface=ADDR]``.

Shared by the config checks (so checkconfig catches a bad port) and the servers that listen.
:func:`bind` takes an address before anything serves on it, so a reconfiguration can hold
every new port it needs before it changes anything.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Mapping


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Listen:
    # None: every interface
    host: str | None
    port: int


def parse_port(spec: object) -> Listen:
    """Where ``spec`` says to listen; ValueError naming the problem otherwise."""
    listen: Listen | None = None
    if isinstance(spec, int) and not isinstance(spec, bool):
        listen = Listen(host=None, port=spec)
    elif isinstance(spec, str):
        if spec.isdigit():
            listen = Listen(host=None, port=int(spec))
        else:
            parts = spec.split(":")
            if parts[0] == "tcp" and len(parts) >= 2 and parts[1].isdigit():
                host = None
                for extra in parts[2:]:
                    key, _, value = extra.partition("=")
                    if key != "interface" or not value:
                        raise ValueError(f"port {spec!r}: unknown option {extra!r}")
                    host = value
                listen = Listen(host=host, port=int(parts[1]))
    if listen is None:
        raise ValueError(f"port {spec!r}: expected a number or 'tcp:PORT[:interface=ADDR]'")
    if not 0 <= listen.port <= 65535:
        raise ValueError(f"port {spec!r}: {listen.port} is not between 0 and 65535")
    return listen


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
        listen = Listen(host=interface, port=listen.port)
    return listen


def bind(listen: Listen) -> socket.socket:
    """A listening, non-blocking socket on ``listen`` (every interface, IPv4 and IPv6 where the
    system can, when its host is None); OSError if the address cannot be had. The caller owns
    it: a server started on it (``loop.create_server(sock=...)``) closes it when it stops."""
    if listen.host is None:
        if socket.has_dualstack_ipv6():
            sock = socket.create_server(
                ("", listen.port), family=socket.AF_INET6, dualstack_ipv6=True
            )
        else:
            sock = socket.create_server(("", listen.port))
    else:
        infos = socket.getaddrinfo(
            listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = infos[0]
        sock = socket.create_server(address[:2], family=family)
    sock.setblocking(False)
    return sock
