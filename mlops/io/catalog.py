"""Named datasets of one run, stored under ``<runs prefix>/<run_id>/`` in the object store.

Stages never build paths: they ask the catalog for ``"validate_documents/outcomes"`` and the
catalog maps the name to an object key (Parquet for tables, JSON for manifests).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

import pandas as pd
from pydantic import BaseModel

from mlops.errors import DatasetNotFound, ObjectNotFound
from mlops.io.objects import ObjectStore


class Catalog:
    def __init__(self, store: ObjectStore, runs_prefix: str, run_id: str):
        self.store = store
        self.run_id = run_id
        self.root = f"{runs_prefix}/{run_id}"

    def key(self, name: str, extension: str) -> str:
        return f"{self.root}/{name}.{extension}"

    def save_table(self, name: str, rows: Iterable[BaseModel | dict[str, Any]] | pd.DataFrame) -> str:
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(_plain(row) for row in rows)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        key = self.key(name, "parquet")
        self.store.put_bytes(key, buffer.getvalue(), content_type="application/vnd.apache.parquet")
        return key

    def load_table(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self._get(self.key(name, "parquet"), name)))

    def load_records(self, name: str) -> list[dict[str, Any]]:
        """A table as row dicts, missing values as None (Parquet brings them back as NaN)."""
        table = self.load_table(name)
        return table.astype(object).where(table.notna(), None).to_dict("records")

    def load_parts(self, name: str) -> pd.DataFrame:
        """Concatenate the tables ``<name>/part-*.parquet`` written by mapped (batched) tasks."""
        keys = [info.key for info in self.store.list(f"{self.root}/{name}") if info.key.endswith(".parquet")]
        if not keys:
            raise DatasetNotFound(
                f"dataset {name!r} of run {self.run_id!r} has no parts under {self.store.uri(self.root + '/' + name)}; "
                "run the stage that produces it first"
            )
        frames = [pd.read_parquet(io.BytesIO(self.store.get_bytes(key))) for key in sorted(keys)]
        return pd.concat([frame for frame in frames if not frame.empty] or frames[:1], ignore_index=True)

    def save_json(self, name: str, payload: Any) -> str:
        key = self.key(name, "json")
        body = json.dumps(payload, indent=2, sort_keys=True, default=str).encode()
        self.store.put_bytes(key, body, content_type="application/json")
        return key

    def load_json(self, name: str) -> Any:
        return json.loads(self._get(self.key(name, "json"), name))

    def _get(self, key: str, name: str) -> bytes:
        try:
            return self.store.get_bytes(key)
        except ObjectNotFound:
            raise DatasetNotFound(
                f"dataset {name!r} of run {self.run_id!r} is missing ({self.store.uri(key)}); "
                "run the stage that produces it first"
            ) from None


def _plain(row: BaseModel | dict[str, Any]) -> dict[str, Any]:
    return row.model_dump(mode="json") if isinstance(row, BaseModel) else row
