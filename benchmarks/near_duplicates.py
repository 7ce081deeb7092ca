"""Near-duplicate lookup at scale: ms per new document with N perceptual hashes already stored.

Fills a fresh metadata store (a temporary SQLite file, or the database a URL names) with N stored
hashes, bulk-loaded the way ``save_preprocess_results`` leaves them (results and their band keys):
mostly random 256-bit hashes, every 100th the centre of a cluster of five near variants (1-22 bits
apart). Then looks up ``queries`` new documents through ``MetadataStore.nearest_phashes``, all in
one call as preprocess_documents does (ms per document) and one call each (latency): half near
variants of stored hashes (0-30 bits, so some fall beyond the distance), half random. Both ways
must agree, and the first ``VERIFIED`` answers are checked against a scan of
every stored hash. Prints JSON; the issue's target is < 5 ms per document at 1,000,000.

    .venv/bin/python benchmarks/near_duplicates.py [--stored 1000000] [--queries 200]
        [--backend sqlite|postgres] [--postgres-admin-url URL] [--database-url URL]

Postgres: a throwaway database on the server of ``--postgres-admin-url`` (default
``MLOPS_TEST_POSTGRES_ADMIN_URL``, else postgres@127.0.0.1:5432), dropped afterwards. A
measurement, not a test: it never fails on a number.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlops.config import Settings
from mlops.io.metadata import MetadataStore
from mlops.io.phash_index import BANDS, band_keys, hamming, hash_value

STORED_RUN = "bench-history"
NEW_RUN = "bench-new"
CLUSTER_EVERY = 100
CLUSTER_SIZE = 5
LOAD_CHUNK = 50_000
VERIFIED = 5
BANDS_BY_RESULT = "ix_phash_bands_result_id"
RESULT_COLUMNS = (
    "id",
    "sha256",
    "run_id",
    "pages",
    "format",
    "has_text_layer",
    "clarity",
    "phash",
    "fingerprint",
)


def measure_lookup(
    stored: int, queries: int, database_url: str | None = None, seed: int = 7
) -> dict[str, float]:
    """Fill a fresh store at ``database_url`` (None: a temporary SQLite file) with ``stored``
    hashes and look up ``queries`` new documents: ``ms_per_document`` in one call for all of
    them, as preprocess_documents does, and the latency of a call per document (median, p95).
    Also the fill time, and how many lookups found a near-duplicate."""
    rng = random.Random(seed)
    max_distance = Settings().preprocess.near_duplicate_max_distance
    with contextlib.ExitStack() as stack:
        if database_url is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="near-duplicates-"))
            database_url = f"sqlite:///{Path(folder) / 'metadata.db'}"
        store = stack.enter_context(MetadataStore(database_url))
        store.migrate()
        hashes = stored_hashes(stored, rng)
        started = time.perf_counter()
        fill(store, hashes)
        fill_seconds = time.perf_counter() - started

        asked = new_documents(hashes, queries, rng)
        single, answers = [], {}
        for query in asked:
            started = time.perf_counter()
            answers.update(store.nearest_phashes([query], max_distance, exclude_run_id=NEW_RUN))
            single.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        batched = store.nearest_phashes(asked, max_distance, exclude_run_id=NEW_RUN)
        batched_ms = (time.perf_counter() - started) * 1000 / len(asked)
    assert batched == answers, "one call for all documents found other near-duplicates than a call each"
    for sha, phash in asked[:VERIFIED]:
        assert answers.get(sha) == scan(hashes, phash, max_distance), f"lookup of {sha} differs from a scan"
    return {
        "ms_per_document": round(batched_ms, 3),
        "single_document_ms_median": round(statistics.median(single), 3),
        "single_document_ms_p95": round(float(np.percentile(single, 95)), 3),
        "fill_seconds": round(fill_seconds, 1),
        "stored": stored,
        "queries": len(asked),
        "near_duplicates_found": len(answers),
        "verified_against_scan": min(VERIFIED, len(asked)),
        "max_distance": max_distance,
        "backend": store.engine.dialect.name,
    }


def stored_hashes(count: int, rng: random.Random) -> list[str]:
    hashes = []
    while len(hashes) < count:
        centre = f"{rng.getrandbits(256):064x}"
        hashes.append(centre)
        if len(hashes) % CLUSTER_EVERY == 1:
            hashes += [flipped(centre, rng.randint(1, 22), rng) for _ in range(CLUSTER_SIZE)]
    return hashes[:count]


def new_documents(hashes: list[str], count: int, rng: random.Random) -> list[tuple[str, str]]:
    near = [flipped(rng.choice(hashes), rng.randint(0, 30), rng) for _ in range(count - count // 2)]
    fresh = [f"{rng.getrandbits(256):064x}" for _ in range(count // 2)]
    return [(f"new-{n:060d}", phash) for n, phash in enumerate(near + fresh)]


def flipped(phash: str, bits: int, rng: random.Random) -> str:
    value = hash_value(phash)
    for bit in rng.sample(range(256), bits):
        value ^= 1 << bit
    return f"{value:064x}"


def scan(hashes: list[str], phash: str, max_distance: int) -> tuple[int, str] | None:
    value = hash_value(phash)
    best = min((hamming(value, hash_value(other)), stored_sha(index)) for index, other in enumerate(hashes))
    return best if best[0] <= max_distance else None


def stored_sha(index: int) -> str:
    return f"{index + 1:064x}"


def fill(store: MetadataStore, hashes: list[str]) -> None:
    """Bulk-load results and their band keys (COPY on Postgres, executemany on SQLite); the band
    rows go in key order, as an index that grew over time is laid out anyway."""
    results = ((index + 1, stored_sha(index), STORED_RUN, 1, "pdf", True, 0.9, phash, "fp")
               for index, phash in enumerate(hashes))  # fmt: skip
    bulk_insert(store, "preprocess_results", RESULT_COLUMNS, results)
    keys = np.empty((len(hashes), BANDS), dtype=np.int64)
    for index, phash in enumerate(hashes):
        keys[index] = band_keys(phash)
    keys = keys.ravel()
    ids = np.repeat(np.arange(1, len(hashes) + 1, dtype=np.int64), BANDS)
    order = np.argsort(keys, kind="stable")
    bands = (pair for start in range(0, len(order), LOAD_CHUNK)
             for pair in zip(keys[order[start : start + LOAD_CHUNK]].tolist(),
                             ids[order[start : start + LOAD_CHUNK]].tolist(), strict=True))  # fmt: skip
    with store.engine.begin() as conn:  # built once after the load: inserted in key order, ids are random
        conn.exec_driver_sql(f"DROP INDEX {BANDS_BY_RESULT}")
    bulk_insert(store, "phash_bands", ("band_key", "result_id"), bands)
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE INDEX {BANDS_BY_RESULT} ON phash_bands (result_id)")
    with (
        store.engine.connect() as conn
    ):  # what autovacuum does after many inserts (statistics, visibility map)
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM ANALYZE" if store.is_postgres else "ANALYZE"
        )


def bulk_insert(store: MetadataStore, table: str, columns: tuple[str, ...], rows: Iterator[tuple]) -> None:
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if store.is_postgres:
            for chunk in chunked(rows):
                text = io.StringIO()
                csv.writer(text).writerows(chunk)
                text.seek(0)
                cursor.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", text)
        else:
            cursor.execute("BEGIN")
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
            for chunk in chunked(rows):
                cursor.executemany(sql, chunk)
        raw.commit() if store.is_postgres else cursor.execute("COMMIT")
    finally:
        raw.close()


def chunked(rows: Iterator[tuple]) -> Iterator[list[tuple]]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == LOAD_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@contextlib.contextmanager
def throwaway_postgres(admin_url: str | None) -> Iterator[str]:
    """A new database on the admin URL's server, dropped afterwards; yields its URL."""
    import psycopg2
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url or os.environ.get("MLOPS_TEST_POSTGRES_ADMIN_URL")
                     or "postgresql://postgres@127.0.0.1:5432/postgres")  # fmt: skip
    name = f"mlops_bench_{uuid.uuid4().hex[:8]}"

    def execute(sql: str) -> None:
        connection = psycopg2.connect(host=admin.host, port=admin.port or 5432, user=admin.username,
                                      password=admin.password, dbname=admin.database or "postgres")  # fmt: skip
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql)
        connection.close()

    execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(drivername="postgresql+psycopg2", database=name).render_as_string(hide_password=False)
    finally:
        execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres-admin-url", help="server for the throwaway database (--backend postgres)")
    parser.add_argument("--database-url", help="use this (empty) database instead of a temporary one")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        url = args.database_url
        if url is None and args.backend == "postgres":
            url = stack.enter_context(throwaway_postgres(args.postgres_admin_url))
        print(json.dumps(measure_lookup(args.stored, args.queries, url, args.seed), indent=2))


if __name__ == "__main__":
    main()
