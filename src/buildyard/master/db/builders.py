"""The builders connector: builders by name, their descriptive info and tags, and their masters.

A builder exists once for the whole cluster (found or created by name). Each master that has it in
its configuration links it through ``builder_masters``; only that master writes its own links
(on every reconfig, :meth:`BuildersRepository.update_builder_list`). Removing a link also removes
the ``configured_workers`` rows that hang off it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from buildyard.master.db import schema as t
from buildyard.master.db.arbitration import find_or_create_id, insert_ignoring_duplicates
from buildyard.master.db.base import Repository
from buildyard.master.db.hashes import name_hash
from buildyard.master.db.prepared import Prepared
from buildyard.master.db.query import QueryOptions, apply
from buildyard.master.model.builders import Builder

_COLUMNS: dict[str, sa.ColumnElement[Any]] = {
    "builderid": t.builders.c.id,
    "name": t.builders.c.name,
    "description": t.builders.c.description,
    "description_format": t.builders.c.description_format,
    "description_html": t.builders.c.description_html,
    "projectid": t.builders.c.projectid,
}

_bm = t.builder_masters


def _filtered(masterid: int | None, projectid: int | None, workerid: int | None) -> sa.Select[Any]:
    stmt = sa.select(t.builders)
    if masterid is not None:
        on_master = sa.select(_bm.c.builderid).where(_bm.c.masterid == masterid)
        stmt = stmt.where(t.builders.c.id.in_(on_master))
    if projectid is not None:
        stmt = stmt.where(t.builders.c.projectid == projectid)
    if workerid is not None:
        for_worker = (
            sa.select(_bm.c.builderid)
            .join(t.configured_workers, t.configured_workers.c.buildermasterid == _bm.c.id)
            .where(t.configured_workers.c.workerid == workerid)
        )
        stmt = stmt.where(t.builders.c.id.in_(for_worker))
    return stmt


def _link_rows(builderid: int, masterid: int) -> sa.Select[int]:
    return sa.select(_bm.c.id).where(_bm.c.builderid == builderid, _bm.c.masterid == masterid)


# names per IN (...) list: well under SQLite's and asyncpg's bound-parameter limits
_BATCH = 500


_ID_BY_HASH = Prepared(
    sa.select(t.builders.c.id).where(t.builders.c.name_hash == sa.bindparam("name_hash"))
)
_NAME_BY_ID = Prepared(
    sa.select(t.builders.c.name).where(t.builders.c.id == sa.bindparam("builderid"))
)


class BuildersRepository(Repository):
    async def find_builder_id(self, name: str, *, conn: AsyncConnection | None = None) -> int:
        """The id of the builder called ``name``, created (with no info) if it is new."""
        h = name_hash(name)
        async with self._write(conn) as c:
            return await find_or_create_id(
                c,
                t.builders,
                where=t.builders.c.name_hash == h,
                values={"name": name, "name_hash": h},
            )

    async def find_builder_ids(
        self, names: Sequence[str], *, conn: AsyncConnection | None = None
    ) -> dict[str, int]:
        """The id of each builder in ``names``, creating the new ones; one transaction.

        A master with thousands of builders configures them all at every start: known ones are
        read in a few batched SELECTs, and the new ones are inserted together (a master's first
        start with 10,000 builders) and read back the same way; a builder another master
        created meanwhile is skipped by the unique index and read like the others.
        """
        async with self._write(conn) as c:
            ids = await self.ids_by_name(names, conn=c)
            new = [name for name in dict.fromkeys(names) if name not in ids]
            if new:
                await insert_ignoring_duplicates(
                    c, t.builders, [{"name": n, "name_hash": name_hash(n)} for n in new]
                )
                ids.update(await self.ids_by_name(new, conn=c))
        return ids

    async def ids_by_name(
        self, names: Iterable[str], *, conn: AsyncConnection | None = None
    ) -> dict[str, int]:
        """The ids of the known builders among ``names`` (unknown ones are left out); read
        by name hash, however many builders there are."""
        hashes = {name_hash(n): n for n in names}
        ids: dict[str, int] = {}
        async with self._read(conn) as c:
            if len(hashes) == 1:  # a force or a trigger of one builder: prepared
                [(h, name)] = hashes.items()
                found = (await _ID_BY_HASH.execute(c, {"name_hash": h})).scalar()
                return {} if found is None else {name: int(found)}
            # batched: a master with thousands of builders configures them all at every start
            keys = list(hashes)
            for start in range(0, len(keys), _BATCH):
                rows = await c.execute(
                    sa.select(t.builders.c.id, t.builders.c.name_hash).where(
                        t.builders.c.name_hash.in_(keys[start : start + _BATCH])
                    )
                )
                for row in rows:
                    ids[hashes[row.name_hash]] = int(row.id)
        return ids

    async def builder_name(
        self, builderid: int, *, conn: AsyncConnection | None = None
    ) -> str | None:
        """The name of builder ``builderid``, or None: one prepared point query (a force by
        builder id asks it for every build)."""
        async with self._read(conn) as c:
            name = (await _NAME_BY_ID.execute(c, {"builderid": builderid})).scalar()
        return None if name is None else str(name)

    async def get_builder(
        self, builderid: int, *, conn: AsyncConnection | None = None
    ) -> Builder | None:
        stmt = sa.select(t.builders).where(t.builders.c.id == builderid)
        async with self._read(conn) as c:
            found = await self._builders(c, stmt)
        return found[0] if found else None

    async def get_builders(
        self,
        *,
        masterid: int | None = None,
        projectid: int | None = None,
        workerid: int | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> list[Builder]:
        """Builders configured on ``masterid``, in ``projectid``, or that ``workerid`` serves.

        ``masterids`` always lists every master of a builder, whatever the filters. Ordered by
        id unless ``options`` say otherwise.
        """
        stmt = apply(
            _filtered(masterid, projectid, workerid),
            options,
            _COLUMNS,
            default_order=[t.builders.c.id],
        )
        async with self._read(conn) as c:
            return await self._builders(c, stmt)

    async def count_builders(
        self,
        *,
        masterid: int | None = None,
        projectid: int | None = None,
        workerid: int | None = None,
        options: QueryOptions | None = None,
        conn: AsyncConnection | None = None,
    ) -> int:
        """How many builders get_builders would return without paging."""
        return await self._count(_filtered(masterid, projectid, workerid), options, _COLUMNS, conn)

    async def _builders(self, c: AsyncConnection, stmt: sa.Select[Any]) -> list[Builder]:
        rows = (await c.execute(stmt)).all()
        ids = [r.id for r in rows]
        if not ids:
            return []
        masterids: defaultdict[int, list[int]] = defaultdict(list)
        for r in await c.execute(
            sa.select(_bm.c.builderid, _bm.c.masterid)
            .where(_bm.c.builderid.in_(ids))
            .order_by(_bm.c.builderid, _bm.c.masterid)
        ):
            masterids[r.builderid].append(r.masterid)
        tags: defaultdict[int, list[str]] = defaultdict(list)
        for r in await c.execute(
            sa.select(t.builders_tags.c.builderid, t.tags.c.name)
            .join(t.tags, t.tags.c.id == t.builders_tags.c.tagid)
            .where(t.builders_tags.c.builderid.in_(ids))
            .order_by(t.builders_tags.c.builderid, t.tags.c.name)
        ):
            tags[r.builderid].append(r.name)
        return [
            Builder(
                id=r.id,
                name=r.name,
                masterids=tuple(masterids[r.id]),
                description=r.description,
                description_format=r.description_format,
                description_html=r.description_html,
                projectid=r.projectid,
                tags=tuple(tags[r.id]),
            )
            for r in rows
        ]

    async def get_infos(
        self, builderids: Iterable[int], *, conn: AsyncConnection | None = None
    ) -> dict[int, tuple[str | None, str | None, str | None, int | None, tuple[str, ...]]]:
        """What a configuration sets on each builder in ``builderids``: ``(description,
        description_format, description_html, projectid, sorted tags)`` by id (unknown ids are
        left out). Read in batches of plain rows: a start compares this for every builder."""
        ids = sorted(set(builderids))
        out: dict[int, tuple[str | None, str | None, str | None, int | None, tuple[str, ...]]]
        out = {}
        b, bt = t.builders, t.builders_tags
        async with self._read(conn) as c:
            for start in range(0, len(ids), _BATCH):
                batch = ids[start : start + _BATCH]
                tags: defaultdict[int, list[str]] = defaultdict(list)
                for r in await c.execute(
                    sa.select(bt.c.builderid, t.tags.c.name)
                    .join(t.tags, t.tags.c.id == bt.c.tagid)
                    .where(bt.c.builderid.in_(batch))
                ):
                    tags[r.builderid].append(r.name)
                for row in await c.execute(
                    sa.select(
                        b.c.id,
                        b.c.description,
                        b.c.description_format,
                        b.c.description_html,
                        b.c.projectid,
                    ).where(b.c.id.in_(batch))
                ):
                    out[int(row.id)] = (
                        row.description,
                        row.description_format,
                        row.description_html,
                        row.projectid,
                        tuple(sorted(tags[row.id])),
                    )
        return out

    async def update_builder_info(
        self,
        builderid: int,
        *,
        description: str | None,
        description_format: str | None,
        description_html: str | None,
        projectid: int | None,
        tags: Sequence[str],
        conn: AsyncConnection | None = None,
    ) -> None:
        """Replace the builder's description, project and tags (tags are created as needed).

        Tags are diffed rather than deleted and re-inserted, so masters configuring the same
        builder at the same moment do not collide on the ``builders_tags`` unique index.
        """
        async with self._write(conn) as c:
            await c.execute(
                t.builders.update()
                .where(t.builders.c.id == builderid)
                .values(
                    description=description,
                    description_format=description_format,
                    description_html=description_html,
                    projectid=projectid,
                )
            )
            tagids = []
            for tag in dict.fromkeys(tags):
                h = name_hash(tag)
                tagids.append(
                    await find_or_create_id(
                        c,
                        t.tags,
                        where=t.tags.c.name_hash == h,
                        values={"name": tag, "name_hash": h},
                    )
                )
            bt = t.builders_tags
            await c.execute(
                bt.delete().where(bt.c.builderid == builderid, bt.c.tagid.not_in(tagids))
            )
            have = set(
                (await c.execute(sa.select(bt.c.tagid).where(bt.c.builderid == builderid)))
                .scalars()
                .all()
            )
            await insert_ignoring_duplicates(
                c, bt, [{"builderid": builderid, "tagid": i} for i in tagids if i not in have]
            )

    async def add_builder_master(
        self, builderid: int, masterid: int, *, conn: AsyncConnection | None = None
    ) -> None:
        """Link the builder to the master (nothing happens if it is linked already)."""
        async with self._write(conn) as c:
            await insert_ignoring_duplicates(
                c, _bm, [{"builderid": builderid, "masterid": masterid}]
            )

    async def remove_builder_master(
        self, builderid: int, masterid: int, *, conn: AsyncConnection | None = None
    ) -> None:
        """Unlink the builder from the master, with the workers configured through that link."""
        async with self._write(conn) as c:
            await self._unlink(c, _link_rows(builderid, masterid))

    async def update_builder_list(
        self, masterid: int, builderids: Sequence[int], *, conn: AsyncConnection | None = None
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Make ``builderids`` exactly the builders linked to ``masterid``.

        Returns ``(added, removed)`` builder ids, each ascending. Only the master itself calls
        this for its own id, so reading the current links first does not race.
        """
        wanted = set(builderids)
        async with self._write(conn) as c:
            current = set(
                (await c.execute(sa.select(_bm.c.builderid).where(_bm.c.masterid == masterid)))
                .scalars()
                .all()
            )
            removed = sorted(current - wanted)
            added = sorted(wanted - current)
            if removed:
                stale = sa.select(_bm.c.id).where(
                    _bm.c.masterid == masterid, _bm.c.builderid.in_(removed)
                )
                await self._unlink(c, stale)
            await insert_ignoring_duplicates(
                c, _bm, [{"builderid": b, "masterid": masterid} for b in added]
            )
        return tuple(added), tuple(removed)

    async def _unlink(self, c: AsyncConnection, links: sa.Select[int]) -> None:
        # ON DELETE CASCADE would take the configured_workers rows too, but only where foreign
        # keys are enforced; delete them explicitly so either way the result is the same.
        cw = t.configured_workers
        await c.execute(cw.delete().where(cw.c.buildermasterid.in_(links)))
        await c.execute(_bm.delete().where(_bm.c.id.in_(links)))
