"""Progress reporting: a tqdm bar on a terminal, periodic log lines elsewhere (Airflow task logs)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
log = logging.getLogger("mlops.progress")


def progress(items: Iterable[T], total: int, desc: str, log_every: int = 10) -> Iterator[T]:
    """Yield items while showing progress; under Airflow (no TTY) log every ``log_every`` percent."""
    if sys.stderr.isatty():
        yield from tqdm(items, total=total, desc=desc, unit="doc")
        return
    step = max(1, total * log_every // 100)
    for done, item in enumerate(items, start=1):
        yield item
        if done % step == 0 or done == total:
            log.info("%s: %d/%d documents", desc, done, total)
