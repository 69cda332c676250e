"""LibVirtWorker's domain metadata, through libvirt's ``test:///default`` driver (in this
process): the name, password and master address reach the machine as given, whatever
characters they hold."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest

from buildyard.master.workers.config import LatentMasterInfo
from buildyard.master.workers.libvirt import AUTH_NS, OWN_NS, LibVirtWorker

libvirt = pytest.importorskip("libvirt")

URI = "test:///default"
DOMAIN = "vm-metadata-escaping"


@pytest.fixture
def conn() -> Iterator[Any]:
    conn = libvirt.open(URI)
    conn.defineXML(
        f"<domain type='test'><name>{DOMAIN}</name><memory>65536</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    try:
        yield conn
    finally:
        domain = conn.lookupByName(DOMAIN)
        if domain.isActive():
            domain.destroy()
        domain.undefine()
        conn.close()


def test_auth_metadata_keeps_quotes_ampersands_and_angles(conn: Any) -> None:
    password = "pa\"ss&w<o>rd'"
    worker = LibVirtWorker(DOMAIN, password, uri=URI, masterFQDN='ci.example:9989"&<')
    worker.master_info = LatentMasterInfo(
        name='master "one" & <two>', host="", msgpack_port=None, pb_port=None
    )
    worker._thd_start()
    domain = conn.lookupByName(DOMAIN)
    assert domain.isActive()
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG
    auth = ET.fromstring(domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, AUTH_NS, flags))
    assert auth.attrib == {
        "username": DOMAIN,
        "password": password,
        "master": 'ci.example:9989"&<',
    }
    own = ET.fromstring(domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, OWN_NS, flags))
    assert own.attrib == {"master": worker.master_info.identity, "worker": DOMAIN}
