"""Near-duplicate search through the band index (migration 0007) links exactly what comparing
with every stored hash linked, on SQLite and Postgres, and forgets what recovery discards."""

from __future__ import annotations

import hashlib
import random

import pytest
import sqlalchemy as sa
from alembic import command

from mlops.io.metadata import MetadataStore
from mlops.io.phash_index import BANDS, hamming, hash_value
from mlops.models import DocumentFormat, PreprocessRecord
from mlops.stages.preprocess_documents import link_near_duplicates
from tests.integration.test_metadata_results import alembic_config, count_rows
from tests.unit.test_phash_index import clustered, random_hash, variant

pytestmark = pytest.mark.integration
MAX_DISTANCE = 22


def sha(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def record(n: int | str, phash: str) -> PreprocessRecord:
    return PreprocessRecord(sha256=sha(n), format=DocumentFormat.PDF, pages=1, has_text_layer=True, clarity=0.9,
                            min_dpi=None, phash=phash, fingerprint=f"fp-{n}")  # fmt: skip


def linked_by_scan(
    records: list[PreprocessRecord], history: list[tuple[str, str]], max_distance: int
) -> list[tuple[str | None, int | None]]:
    """What near-duplicate linking did before the index: compare with every known hash."""
    known = list(history)
    links = []
    for rec in records:
        found = [
            (hamming(hash_value(rec.phash), hash_value(phash)), other)
            for other, phash in known
            if other != rec.sha256
        ]
        distance, closest = min(found, default=(None, None))
        links.append(
            (closest, distance) if distance is not None and distance <= max_distance else (None, None)
        )
        known.append((rec.sha256, rec.phash))
    return links


@pytest.mark.parametrize("max_distance", [MAX_DISTANCE, 60])  # 60: past the bands, a scan
def test_index_links_the_same_earlier_documents_as_a_scan_of_every_hash(metadata_store, max_distance):
    rng = random.Random(11)
    stored = [record(n, phash) for n, phash in enumerate(clustered(rng, 1200))]
    metadata_store.save_preprocess_results("run-1", stored[:700])
    metadata_store.save_preprocess_results("run-2", stored[700:])
    near = [variant(rng.choice(stored).phash, flips % 30, rng) for flips in range(200)]
    metadata_store.save_preprocess_results("run-3", [record("own", near[0])])  # this run's own rows: left out
    in_run = [variant(phash, 5, rng) for phash in near[:20]]  # near the run's own earlier documents
    new = [
        record(f"new-{n}", phash)
        for n, phash in enumerate(near + in_run + [random_hash(rng) for _ in range(50)])
    ]
    new += [stored[3], stored[800]]  # documents measured before: never their own near-duplicate
    rng.shuffle(new)

    history = metadata_store.nearest_phashes([(rec.sha256, rec.phash) for rec in new], max_distance,
                                             exclude_run_id="run-3")  # fmt: skip
    links = [(rec.near_duplicate_of, rec.near_duplicate_distance)
             for rec in link_near_duplicates(new, history, max_distance)]  # fmt: skip

    everything = [(rec.sha256, rec.phash) for rec in stored]
    assert links == linked_by_scan(new, everything, max_distance)
    assert sum(link != (None, None) for link in links) > 100


def test_a_retried_save_with_another_hash_replaces_its_bands(metadata_store):
    rng = random.Random(2)
    first, second = random_hash(rng), random_hash(rng)
    metadata_store.save_preprocess_results("run-1", [record(1, first)])
    metadata_store.save_preprocess_results("run-1", [record(1, second)])

    assert metadata_store.nearest_phashes([(sha(2), first)], MAX_DISTANCE) == {}
    assert metadata_store.nearest_phashes([(sha(2), second)], MAX_DISTANCE) == {sha(2): (0, sha(1))}
    assert count_rows(metadata_store, "phash_bands") == BANDS


def test_results_discarded_from_a_stopped_run_are_no_longer_found(metadata_store):
    rng = random.Random(3)
    kept, discarded = random_hash(rng), random_hash(rng)
    metadata_store.save_preprocess_results("run-dead", [record(1, kept), record(2, discarded)])

    assert metadata_store.discard_results("run-dead", [sha(2)])["preprocess_results"] == 1

    assert metadata_store.nearest_phashes([(sha(3), discarded)], MAX_DISTANCE) == {}
    assert metadata_store.nearest_phashes([(sha(3), kept)], MAX_DISTANCE) == {sha(3): (0, sha(1))}
    assert count_rows(metadata_store, "phash_bands") == BANDS


def test_upgrading_from_0005_indexes_the_hashes_already_stored(empty_store: MetadataStore):
    with empty_store.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0005")
    rng = random.Random(4)
    hashes = [random_hash(rng) for _ in range(2500)]  # more than one backfill batch
    columns = ("sha256", "run_id", "pages", "format", "has_text_layer", "clarity", "phash", "fingerprint")
    results_at_0005 = sa.table("preprocess_results", *map(sa.column, columns))
    rows = [dict(zip(columns, (sha(n), "run-1", 1, "pdf", True, 0.9, phash, f"fp-{n}"), strict=True))
            for n, phash in enumerate(hashes)]  # fmt: skip
    with empty_store.engine.begin() as conn:
        conn.execute(sa.insert(results_at_0005), rows)

    empty_store.migrate()

    assert count_rows(empty_store, "phash_bands") == BANDS * len(hashes)
    queries = [(sha(f"q{n}"), variant(hashes[n], 22, rng)) for n in (0, 1999, 2499)]
    found = empty_store.nearest_phashes(queries, MAX_DISTANCE)
    assert found == {query: (22, sha(n)) for (query, _), n in zip(queries, (0, 1999, 2499), strict=True)}
