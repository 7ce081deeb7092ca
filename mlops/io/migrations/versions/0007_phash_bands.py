"""Perceptual-hash band index: near-duplicate search that does not read every stored hash.

Revision ID: 0007
Revises: 0006
Create Date: 2025-01-07 00:00:00

``phash_bands`` holds, for each preprocess result, 12 integer keys, one per band of its 256-bit
perceptual hash (band number * 2**22 + the band's 21-22 bits, bands taken from the least
significant bit up); near-duplicate search probes them by primary key (see
mlops/io/phash_index.py). The rows are written and deleted with their result, by the store; no
foreign key, because SQLite alters a column by rebuilding the table and dropping the old one would
cascade into this one. Existing results are backfilled here.

Self-contained on purpose (no import of mlops): a migration must keep meaning what it meant when
it was written, so the band layout of this revision is spelled out below.
"""

from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
BANDS = 12
BAND_KEY_BITS = 22
BACKFILL_BATCH = 2_000


def band_keys(phash: str) -> list[int]:
    value = int(phash, 16)
    keys, start = [], 0
    for band in range(BANDS):
        width = 256 // BANDS + (band < 256 % BANDS)
        keys.append((band << BAND_KEY_BITS) | ((value >> start) & ((1 << width) - 1)))
        start += width
    return keys


def upgrade() -> None:
    op.create_table(
        "phash_bands",
        sa.Column("band_key", sa.Integer(), nullable=False),
        sa.Column("result_id", BIG_ID, nullable=False),
        sa.PrimaryKeyConstraint("band_key", "result_id", name="pk_phash_bands"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_phash_bands_result_id", "phash_bands", ["result_id"])
    bands = sa.table("phash_bands", sa.column("band_key"), sa.column("result_id"))
    conn = op.get_bind()
    for batch in _results(conn):
        conn.execute(sa.insert(bands), [{"band_key": key, "result_id": id_} for id_, phash in batch
                                        for key in band_keys(phash)])  # fmt: skip


def _results(conn: sa.Connection) -> Iterator[list[tuple[int, str]]]:
    """(id, phash) of every preprocess result, in batches by id (keyset: no cursor held open)."""
    results = sa.table("preprocess_results", sa.column("id"), sa.column("phash"))
    last = None
    while True:
        query = sa.select(results.c.id, results.c.phash).order_by(results.c.id).limit(BACKFILL_BATCH)
        batch = [
            tuple(row) for row in conn.execute(query if last is None else query.where(results.c.id > last))
        ]
        if not batch:
            return
        yield batch
        last = batch[-1][0]


def downgrade() -> None:
    op.drop_index("ix_phash_bands_result_id", table_name="phash_bands")
    op.drop_table("phash_bands")
