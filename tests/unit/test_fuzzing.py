"""Hypothesis-driven fuzzing of the validate -> preprocess path: any mutation of a good PDF,
PNG, JPEG or multi-page TIFF gets a verdict from the fixed list, never an exception, and a file
that validation accepts is one preprocessing can measure (a crash there would quarantine a
document validation called good)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from mlops.documents import InspectJob, inspect_document
from mlops.models import QuarantineReason
from mlops.page_measures import MeasureJob, measure
from tests.unit.hostile_corpus import image_bytes, one_page

EXAMPLES = int(os.environ.get("MLOPS_FUZZ_EXAMPLES", "150"))
KEPT_HEADER = 16


def scan() -> Image.Image:
    page = Image.new("L", (200, 260), 255)
    ImageDraw.Draw(page).text((20, 40), "Borrower Jane Doe\nPrincipal $12,500.00", fill=0)
    return page


SEEDS = {
    "statement.pdf": one_page(),
    "scan.png": image_bytes(scan(), "PNG", dpi=(100, 100)),
    "scan.jpg": image_bytes(scan(), "JPEG", dpi=(100, 100)),
    "scan.tiff": image_bytes(scan(), "TIFF", save_all=True, append_images=[scan()], dpi=(100, 100)),
}
MUTATION = st.tuples(
    st.sampled_from(["overwrite", "cut", "insert"]), st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=16)
)


def mutated(data: bytes, mutations: list[tuple[str, float, bytes]]) -> bytes:
    """The file with its first bytes intact (format sniffing has tests of its own) and the
    rest overwritten, cut or grown where the mutations say."""
    out = bytearray(data)
    for action, where, payload in mutations:
        at = KEPT_HEADER + int(where * (len(out) - KEPT_HEADER))
        if action == "overwrite":
            out[at : at + len(payload)] = payload
        elif action == "cut":
            del out[at : at + 8 * len(payload)]
        else:
            out[at:at] = payload
    return bytes(out)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SEEDS)), mutations=st.lists(MUTATION, min_size=1, max_size=6))
def test_a_mutated_document_gets_a_verdict_and_an_accepted_one_can_be_measured(name, mutations):
    data = mutated(SEEDS[name], mutations)
    outcome = inspect_document(InspectJob("0" * 64, name, data, max_pages=50, max_image_pixels=20_000_000, render_dpi=300))
    event(f"{name}: {outcome.quarantine_reason or 'accepted'}")
    if not outcome.accepted:
        assert outcome.quarantine_reason in set(QuarantineReason) and outcome.detail
        return
    measurement = measure(MeasureJob("0" * 64, outcome.format, data, render_dpi=100, text_layer_min_chars=40))
    assert len(measurement.pages) == outcome.pages
