"""Log chunk compression, with Buildbot's ids in ``logchunks.compressed`` and its formats.

``c['logCompressionMethod']`` names one: raw (0), gz (1, zlib), bz2 (2), lz4 (3, an LZ4 block
with its size), zstd (4, a zstd frame) or br (5, a brotli stream): all six that Buildbot writes,
so a database adopted from Buildbot reads whatever it holds.
"""

from __future__ import annotations

import bz2
import zlib
from collections.abc import Callable

import brotli
import lz4.block
import zstandard

from buildyard.master.db.errors import DbError

RAW, GZIP, BZ2, LZ4, ZSTD, BROTLI = 0, 1, 2, 3, 4, 5

METHODS = {"raw": RAW, "gz": GZIP, "bz2": BZ2, "lz4": LZ4, "zstd": ZSTD, "br": BROTLI}


def _zstd_read(data: bytes) -> bytes:
    # a frame written by a streaming compressor has no content size: read it as a stream
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


_PACK: dict[int, Callable[[bytes], bytes]] = {
    # the libraries' default levels: within 1% (zlib) and 11% (zstd) of the sizes of level 9
    # on real build logs, at 2x and 4.5x its speed (Buildbot uses 9, any level reads back)
    GZIP: lambda data: zlib.compress(data, 6),
    BZ2: lambda data: bz2.compress(data, 9),
    LZ4: lambda data: bytes(lz4.block.compress(data)),
    ZSTD: lambda data: zstandard.ZstdCompressor(level=3).compress(data),
    # quality 5 of 11: brotli's top levels cost tens of times the CPU for a few percent
    BROTLI: lambda data: bytes(brotli.compress(data, quality=5)),
}
_UNPACK: dict[int, Callable[[bytes], bytes]] = {
    RAW: lambda data: data,
    GZIP: zlib.decompress,
    BZ2: bz2.decompress,
    LZ4: lambda data: bytes(lz4.block.decompress(data)),
    ZSTD: _zstd_read,
    BROTLI: lambda data: bytes(brotli.decompress(data)),
}


def method_id(name: str) -> int:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown log compression method {name!r}; one of {', '.join(METHODS)}"
        ) from None


# Loud output is compressed as it is appended, while the command runs, where the level decides
# whether the master keeps up: zlib's fastest level (gzip --fast) packs a loud log 2-3x faster
# than level 6 for 9-20% more bytes (a CI log, a diff), and a 50 MB step's master CPU halves.
# The chunks merged once the log is finished (:func:`pack`) keep the default level.
_PACK_LIVE: dict[int, Callable[[bytes], bytes]] = {
    **_PACK,
    GZIP: lambda data: zlib.compress(data, 1),
}


def pack(data: bytes, method: int, *, live: bool = False) -> bytes:
    """``data`` packed with ``method``; ``live``: for output still coming (fast levels)."""
    return (_PACK_LIVE if live else _PACK)[method](data)


def unpack(data: bytes, method: int) -> bytes:
    unpacker = _UNPACK.get(method)
    if unpacker is None:
        raise DbError(f"log chunk compression {method} is unknown (Buildbot's are 0 to 5)")
    return unpacker(data)
