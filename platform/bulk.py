"""Bulk-load helpers for county-scale writes (COPY of hundreds of thousands of rows)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


@contextmanager
def rebuilt_after_load(cursor: psycopg.Cursor, table: str) -> Iterator[None]:
    """Drop ``table``'s secondary indexes, unique constraints and foreign keys, run the load,
    then put every one back under its own name and definition — in the caller's transaction,
    so a failure rolls the drops back too.

    Maintaining a B-tree per row costs far more than building it once from sorted data (a
    million farmers: ~50 s of index upkeep against ~9 s of builds), and re-adding a foreign key
    validates it in one set-based pass instead of one lookup per row. Use it only while the
    table is empty or nearly so: the rebuild costs as much as the whole table.
    """
    cursor.execute(
        """
        SELECT c.conname, pg_get_constraintdef(c.oid)
          FROM pg_constraint c
         WHERE c.conrelid = %s::regclass AND c.contype IN ('u', 'f')
        """,
        [table],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
          FROM pg_index i
         WHERE i.indrelid = %s::regclass AND NOT i.indisprimary
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        """,
        [table],
    )
    indexes = cursor.fetchall()
    for name, _definition in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        cursor.execute(f"DROP INDEX {name}")
    yield
    for _name, definition in indexes:
        cursor.execute(definition)
    for name, definition in constraints:
        cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
