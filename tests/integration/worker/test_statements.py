"""The worker's PostgreSQL statements (`ferry.db.transitions`: the transitions and the
progress statement) find rows by id only."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ferry.db.models import new_mark, utcnow
from ferry.db.transitions import _CLAIM, _COMPLETE, _FAIL, _PROGRESS, _RETRY, _UNCLAIM


async def test_no_statement_reads_the_status_index_on_stale_statistics(engine: AsyncEngine) -> None:
    """Right after a burst of creates (before autovacuum analyzes the table) the planner
    takes PENDING rows for rare: a status condition an index can serve made each claim
    read the whole backlog. A fresh copy of the table, never analyzed, is that moment."""
    async with engine.connect() as conn, conn.begin():
        # A temporary `jobs` (pg_temp comes first in the search path), dropped on rollback.
        await conn.execute(text("CREATE TEMP TABLE jobs (LIKE public.jobs INCLUDING ALL)"))
        await conn.execute(
            text(
                "INSERT INTO jobs (id, tenant_id, type, payload, status, attempts, max_attempts,"
                " created_at, updated_at, next_run_at) SELECT gen_random_uuid(), 't', 'sleep',"
                " '{}', 'PENDING', 0, 5, now(), now(), now() FROM generate_series(1, 20000)"
            )
        )
        ids = list((await conn.execute(text("SELECT id FROM jobs LIMIT 16"))).scalars())
        now, none, mark = utcnow(), [None] * len(ids), new_mark()
        statements = {
            _CLAIM: (ids, now, mark),
            _COMPLETE: (ids, none, now, mark),
            _FAIL: (ids, none, now, mark),
            _RETRY: (ids, none, [now] * len(ids), now, mark),
            _UNCLAIM: (ids, [1] * len(ids), now, mark),
            _PROGRESS: (ids, [1] * len(ids), [0.5] * len(ids), ["m"] * len(ids)),
        }
        for sql, params in statements.items():
            explained = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", params)
            conditions = _index_conditions(explained.scalar_one())
            assert conditions, sql  # the rows are found through an index: the primary key's
            assert not any("status" in condition for condition in conditions), (sql, conditions)
        await conn.rollback()


def _index_conditions(plan: object) -> list[str]:
    """Every `Index Cond` and `Recheck Cond` in an EXPLAIN (FORMAT JSON) plan."""
    found: list[str] = []
    if isinstance(plan, dict):
        for key, value in plan.items():
            if key in ("Index Cond", "Recheck Cond"):
                found.append(str(value))
            else:
                found += _index_conditions(value)
    elif isinstance(plan, list):
        for item in plan:
            found += _index_conditions(item)
    return found
