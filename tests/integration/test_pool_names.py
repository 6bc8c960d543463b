"""The request path's pooled connections name themselves in pg_stat_activity (`lsd`, `lsd-read`), as the writer's
(`lsd-writer`) and the sessions' (`lsd-session`) do, unless the URL names them itself."""

from __future__ import annotations

from psycopg.conninfo import make_conninfo

from lsd.store.database import Database


async def name_of(database: Database, read: bool = False) -> str:
    await database.open()
    try:
        door = database.reading("query") if read else database.connection("query")
        async with door as conn:
            row = await (await conn.execute("SELECT current_setting('application_name')")).fetchone()
    finally:
        await database.close()
    assert row is not None
    return str(row[0])


async def test_pool_connections_carry_an_application_name(database_url: str) -> None:
    assert await name_of(Database(database_url, min_size=1, max_size=1)) == "lsd"
    replica = Database(database_url, min_size=1, max_size=1, read_url=database_url)
    assert await name_of(replica, read=True) == "lsd-read"
    own = Database(make_conninfo(database_url, application_name="billing-gw"), min_size=1, max_size=1)
    assert await name_of(own) == "billing-gw"
