"""ports.bind: an address held before anything serves on it."""

from __future__ import annotations

import socket

import pytest

from buildyard.common.ports import Listen, bind


def test_bind_holds_the_address_and_accepts_ipv4_on_every_interface() -> None:
    sock = bind(Listen(host=None, port=0))
    try:
        port = sock.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=10):
            pass  # queued by the kernel: the socket listens though nothing serves yet
        with pytest.raises(OSError, match=r"in use|Errno 98"):
            bind(Listen(host="127.0.0.1", port=port))
    finally:
        sock.close()


def test_bind_on_an_interface() -> None:
    sock = bind(Listen(host="127.0.0.1", port=0))
    try:
        assert sock.getsockname()[0] == "127.0.0.1"
        assert not sock.getblocking()
    finally:
        sock.close()
