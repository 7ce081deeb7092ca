"""The band index finds exactly what comparing with every hash finds, at any distance."""

from __future__ import annotations

import random

import imagehash
import pytest

from mlops.io.phash_index import PhashIndex, band_keys, hamming, hash_value, probe_keys


def random_hash(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def variant(phash: str, flips: int, rng: random.Random) -> str:
    value = hash_value(phash)
    for bit in rng.sample(range(256), flips):
        value ^= 1 << bit
    return f"{value:064x}"


def clustered(rng: random.Random, count: int) -> list[str]:
    """Random hashes, a third of them near variants (0-40 bits flipped) of the first 50."""
    hashes = [random_hash(rng) for _ in range(count)]
    return [variant(rng.choice(hashes[:50]), rng.randint(0, 40), rng) if index % 3 == 0 else phash
            for index, phash in enumerate(hashes)]  # fmt: skip


def scan(stored: dict[str, str], sha: str, phash: str, max_distance: int) -> tuple[int, str] | None:
    found = [(hamming(hash_value(phash), hash_value(other)), other_sha)
             for other_sha, other in stored.items() if other_sha != sha]  # fmt: skip
    best = min(found, default=None)
    return best if best is not None and best[0] <= max_distance else None


def test_distance_is_the_imagehash_distance():
    rng = random.Random(1)
    for _ in range(200):
        left, right = random_hash(rng), random_hash(rng)
        assert hamming(hash_value(left), hash_value(right)) == imagehash.hex_to_hash(
            left
        ) - imagehash.hex_to_hash(right)


@pytest.mark.parametrize("max_distance", [0, 11, 12, 22, 23, 24, 35, 60])
def test_the_index_finds_the_same_nearest_document_as_a_scan(max_distance):
    rng = random.Random(max_distance)
    stored = {f"{index:064x}": phash for index, phash in enumerate(clustered(rng, 1500))}
    index = PhashIndex(max_distance)
    for sha, phash in stored.items():
        index.add(sha, phash)
    near = [
        variant(phash, flips % 41, rng) for flips, phash in enumerate(rng.sample(list(stored.values()), 300))
    ]
    queries = [
        (f"q{number}", phash) for number, phash in enumerate(near + [random_hash(rng) for _ in range(100)])
    ]
    queries += list(stored.items())[:100]  # stored documents themselves: never their own match
    matched = 0
    for sha, phash in queries:
        expected = scan(stored, sha, phash, max_distance)
        assert index.nearest(sha, phash) == expected, (sha, phash)
        matched += expected is not None
    assert matched >= 5


def test_ties_go_to_the_smaller_sha256():
    rng = random.Random(7)
    phash = random_hash(rng)
    index = PhashIndex(22)
    for sha in ("c" * 64, "a" * 64, "b" * 64):
        index.add(sha, variant(phash, 0, rng))
    assert index.nearest("d" * 64, phash) == (0, "a" * 64)


def test_probes_cover_every_hash_within_the_distance_and_give_up_when_too_many():
    rng = random.Random(3)
    phash = random_hash(rng)
    probes = set(probe_keys(phash, 22))
    for flips in range(23):
        assert probes & set(band_keys(variant(phash, flips, rng)))
    assert len(probes) == 268
    assert probe_keys(phash, 60) is None
