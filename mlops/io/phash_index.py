"""Exact near-duplicate search over 256-bit perceptual hashes by multi-index hashing.

A hash (hex, as :class:`mlops.models.PreprocessRecord` stores it) is cut into ``BANDS`` = 12
bands of 21-22 bits, and each band is stored as one integer key: the band's number times
``2**BAND_KEY_BITS`` plus the band's bits. By pigeonhole, two hashes at Hamming distance ``d``
agree within ``d // BANDS`` bits on at least one band, so every hash within ``max_distance`` of
a query shares a key with one of the query's *probe keys*: its band values and every value
within ``radius = max_distance // BANDS`` flipped bits of them. The candidates are then checked
against the exact distance, so the search finds exactly what a scan of every hash would.

The bands are fixed (stored keys must not change with configuration); the radius follows the
configured distance. At the default distance 22 the radius is 1: 12 x (1 + 21..22) = 268 probe
keys, and on random hashes about 1.3 candidates per 10,000 stored, ~130 at a million. A distance
of 24-35 makes the radius 2 (~2,800 probes); past ``MAX_PROBES`` probing costs more than it
saves and :func:`probe_keys` returns None: the caller scans every stored hash instead.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from functools import cache
from itertools import combinations

HASH_BITS = 256
BANDS = 12
BAND_KEY_BITS = 22  # the widest band; band n's keys are n * 2**22 + value, all below 2**31
MAX_PROBES = 5_000


def _band_layout() -> list[tuple[int, int]]:
    """(first bit, width) of each band: widths differ by at most one bit."""
    base, wider = divmod(HASH_BITS, BANDS)
    layout, start = [], 0
    for band in range(BANDS):
        width = base + (band < wider)
        layout.append((start, width))
        start += width
    return layout


BAND_LAYOUT = _band_layout()


def hash_value(phash: str) -> int:
    return int(phash, 16)


def hamming(left: int, right: int) -> int:
    return (left ^ right).bit_count()


def band_keys(phash: str) -> list[int]:
    """The ``BANDS`` keys stored for a hash."""
    value = hash_value(phash)
    return [(band << BAND_KEY_BITS) | ((value >> start) & ((1 << width) - 1))
            for band, (start, width) in enumerate(BAND_LAYOUT)]  # fmt: skip


def radius_for(max_distance: int) -> int:
    return max(0, max_distance) // BANDS


@cache
def _band_flips(radius: int) -> tuple[tuple[int, ...], ...] | None:
    """Per band, the masks of up to ``radius`` bits; None past ``MAX_PROBES`` masks in all."""
    if (
        sum(math.comb(width, flipped) for _, width in BAND_LAYOUT for flipped in range(radius + 1))
        > MAX_PROBES
    ):
        return None
    return tuple(
        tuple(
            sum(1 << bit for bit in bits)
            for flipped in range(radius + 1)
            for bits in combinations(range(width), flipped)
        )
        for _, width in BAND_LAYOUT
    )


def can_probe(max_distance: int) -> bool:
    """Whether probing the bands beats comparing with every hash at this distance."""
    return _band_flips(radius_for(max_distance)) is not None


def probe_keys(phash: str, max_distance: int) -> list[int] | None:
    """Keys that some band of every hash within ``max_distance`` has; None when there would be
    more than ``MAX_PROBES`` of them (scan instead)."""
    flips = _band_flips(radius_for(max_distance))
    if flips is None:
        return None
    return [key ^ mask for key, masks in zip(band_keys(phash), flips, strict=True) for mask in masks]


def nearest(
    value: int, candidates: Iterable[tuple[str, int]], max_distance: int, exclude_sha256: str
) -> tuple[int, str] | None:
    """The closest (distance, sha256) within ``max_distance``, ties to the smaller sha256."""
    found = [(hamming(value, other), sha) for sha, other in candidates if sha != exclude_sha256]
    best = min(found, default=None)
    return best if best is not None and best[0] <= max_distance else None


class PhashIndex:
    """The same search in memory, for the documents of one run."""

    def __init__(self, max_distance: int) -> None:
        self.max_distance = max_distance
        self._hashes: dict[str, int] = {}
        self._by_key: defaultdict[int, list[str]] = defaultdict(list)

    def add(self, sha256: str, phash: str) -> None:
        if sha256 in self._hashes:
            return
        self._hashes[sha256] = hash_value(phash)
        for key in band_keys(phash):
            self._by_key[key].append(sha256)

    def nearest(self, sha256: str, phash: str) -> tuple[int, str] | None:
        """The closest indexed document other than ``sha256`` within the distance, or None."""
        probes = probe_keys(phash, self.max_distance)
        if probes is None:
            shas: Iterable[str] = self._hashes
        else:
            shas = {sha for key in probes for sha in self._by_key.get(key, ())}
        return nearest(
            hash_value(phash), ((sha, self._hashes[sha]) for sha in shas), self.max_distance, sha256
        )
