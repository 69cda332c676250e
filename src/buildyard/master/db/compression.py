"""Log chunk compression, with Buildbot's ids in ``logchunks.compressed`` and its formats.

``c['logCompressionMethod']`` names one: raw (0), gz (1, zlib), bz2 (2), lz4 (3, an LZ4 block
with its size), zstd (4, a zstd frame) or br (5, a brotli stream): all six that Buildbot writes,
so a database adopted from Buildbot reads whatever it holds.
"""

from __future__ import annotations

import bz2
import zlib
from collections.abc import Callable

from buildyard.master.db.errors import DbError

# lz4, zstandard and brotli are imported by the first log that uses them (most masters never
# do: gz is the default), which keeps their C extensions out of a master's start-up and memory

RAW, GZIP, BZ2, LZ4, ZSTD, BROTLI = 0, 1, 2, 3, 4, 5

METHODS = {"raw": RAW, "gz": GZIP, "bz2": BZ2, "lz4": LZ4, "zstd": ZSTD, "br": BROTLI}


def _zstd_read(data: bytes) -> bytes:
    import zstandard

    # a frame written by a streaming compressor has no content size: read it as a stream
    return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(data))


def _zstd_pack(data: bytes) -> bytes:
    import zstandard

    return bytes(zstandard.ZstdCompressor(level=3).compress(data))


def _lz4_pack(data: bytes) -> bytes:
    import lz4.block

    return bytes(lz4.block.compress(data))


def _lz4_read(data: bytes) -> bytes:
    import lz4.block

    return bytes(lz4.block.decompress(data))


def _brotli_pack(data: bytes) -> bytes:
    import brotli

    # quality 5 of 11: brotli's top levels cost tens of times the CPU for a few percent
    return bytes(brotli.compress(data, quality=5))


def _brotli_read(data: bytes) -> bytes:
    import brotli

    return bytes(brotli.decompress(data))


_PACK: dict[int, Callable[[bytes], bytes]] = {
    # the libraries' default levels: within 1% (zlib) and 11% (zstd) of the sizes of level 9
    # on real build logs, at 2x and 4.5x its speed (Buildbot uses 9, any level reads back)
    GZIP: lambda data: zlib.compress(data, 6),
    BZ2: lambda data: bz2.compress(data, 9),
    LZ4: _lz4_pack,
    ZSTD: _zstd_pack,
    BROTLI: _brotli_pack,
}
_UNPACK: dict[int, Callable[[bytes], bytes]] = {
    RAW: lambda data: data,
    GZIP: zlib.decompress,
    BZ2: bz2.decompress,
    LZ4: _lz4_read,
    ZSTD: _zstd_read,
    BROTLI: _brotli_read,
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
