"""Reprocessing re-validates quarantined documents: after a limit is raised, a document once
refused is released from quarantine, extracted and counted, and nothing is lost either way."""

from __future__ import annotations

from mlops.io.metadata import MetadataStore
from mlops.pipeline import run_all
from mlops.quarantine import raw_key_for
from mlops.sample_data import generate_corpus
from mlops.stages import open_context
from tests.fixtures.platform import CORPUS_SEED, platform_settings


def test_reprocess_releases_documents_a_raised_limit_now_accepts(tmp_path):
    tight = platform_settings(tmp_path, limits={"max_file_bytes": 2_000})
    store = open_context("setup", tight).store
    rows = generate_corpus(2, CORPUS_SEED, lambda name, data: store.put_bytes(f"landing/{name}", data),
                           include_bad=False)  # fmt: skip
    sizes = {row["sha256"]: row for row in rows if row["sha256"]}
    first = run_all("cli_tight", tight)
    assert first["quarantine_reasons"] == {"too_large": len(sizes)}

    assert run_all("cli_again", tight)["documents"]["new"] == 0  # quarantined stays put without reprocess

    roomy = platform_settings(tmp_path)
    released = run_all("cli_roomy", roomy, reprocess=True)

    assert released["documents"]["accepted"] == released["extraction"]["documents"] == len(sizes)
    assert released["documents"]["quarantined"] == 0
    metadata = MetadataStore.from_settings(roomy)
    ctx = open_context("check", roomy)
    for sha in sizes:
        document = metadata.get_document(sha)
        assert document["quarantine_reason"] is None and document["raw_key"] == raw_key_for(ctx, sha)
        assert ctx.store.exists(document["raw_key"])
        assert not list(ctx.store.list(f"{roomy.prefixes.quarantine}/{sha}/"))
    assert {event["event"] for event in metadata.events("cli_roomy") if event["sha256"] in sizes} >= {"released"}
    assert len(metadata.extractions("cli_roomy")) == len(sizes)
