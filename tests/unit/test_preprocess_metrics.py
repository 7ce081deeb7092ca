"""Preprocessing metrics on generated pages: clarity that does not reward noise, DPI, text
layer, and re-scan detection by perceptual hash."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from mlops.documents import iter_pages, sniff_format
from mlops.page_measures import (
    MeasureJob,
    integer_median,
    measure,
    median_3x3,
    page_quality,
    skew_angle,
    summarise,
)
from mlops.stages.preprocess_documents import link_near_duplicates


def good_files(corpus, **criteria):
    return [
        name
        for name, label in corpus.labels.items()
        if label["expected_quarantine_reason"] is None and not label["duplicate_of"]
        and all(label[key] == value for key, value in criteria.items())
    ]


def measured(corpus, name):
    data = (corpus.directory / name).read_bytes()
    document_format = sniff_format(data)
    return summarise(document_format, measure(MeasureJob(name, document_format, data, 100, 40)), 40)


def clean_page(corpus):
    data = (corpus.directory / good_files(corpus, format="pdf", dpi=None)[0]).read_bytes()
    return next(iter_pages(data, sniff_format(data), 100)).image


def test_blur_lowers_clarity_and_noise_does_not_raise_it(corpus):
    page = clean_page(corpus)
    rng = np.random.default_rng(0)
    noisy = np.clip(np.asarray(page, dtype=np.float32) + rng.normal(0, 25, (page.height, page.width)), 0, 255)
    sharp_clean, _, clean = page_quality(np.asarray(page))
    sharp_noisy, noise, noisy_clarity = page_quality(noisy.astype(np.uint8))
    _, _, blurred = page_quality(np.asarray(page.filter(ImageFilter.GaussianBlur(2))))

    assert 0 <= blurred < clean <= 1
    assert noisy_clarity < clean
    assert noise > 5 > page_quality(np.asarray(page))[1]
    assert 0.5 < sharp_noisy / sharp_clean < 2  # sharpness is measured after denoising


def test_text_layer_dpi_and_page_count(corpus):
    text_pdf = measured(corpus, good_files(corpus, format="pdf", dpi=None)[0])
    assert text_pdf.has_text_layer and text_pdf.min_dpi is None
    assert text_pdf.clarity is None  # born digital: no scan quality to judge, so none is made up
    for name in good_files(corpus, format="png") + good_files(corpus, format="tiff"):
        record = measured(corpus, name)
        label = corpus.labels[name]
        assert not record.has_text_layer and 0 <= record.clarity <= 1
        assert record.pages == label["pages"]
        assert abs(record.min_dpi - label["dpi"]) < 1


def test_rescans_are_linked_to_their_original_and_nothing_else(corpus):
    names = good_files(corpus)
    records = [measured(corpus, name) for name in names]
    linked = link_near_duplicates(records, history={}, max_distance=22)
    found = {name: record.near_duplicate_of for name, record in zip(names, linked) if record.near_duplicate_of}
    expected = {name: corpus.labels[name]["near_duplicate_of"] for name in names
                if corpus.labels[name]["near_duplicate_of"]}
    assert expected
    assert found == expected


def test_deskew_finds_the_angle_that_sets_a_tilted_page_upright(corpus):
    page = clean_page(corpus)
    for tilt in (-2.0, -0.75, 1.5):
        tilted = page.rotate(tilt, fillcolor=255, resample=Image.BILINEAR)
        assert skew_angle(tilted) == pytest.approx(-tilt, abs=0.25)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 4), (331, 257)])
def test_the_noise_filter_is_exactly_a_3x3_median_filter(shape):
    gray = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)

    expected = np.asarray(Image.fromarray(gray).filter(ImageFilter.MedianFilter(3)))

    assert np.array_equal(median_3x3(gray), expected)


@pytest.mark.parametrize("size", [1, 2, 7, 10, 1001])
def test_the_noise_estimate_takes_numpys_median_of_grey_level_residuals(size):
    residuals = np.random.default_rng(size).integers(-255, 256, (50, size), dtype=np.int16)

    for row in residuals:
        assert integer_median(row, 255) == np.median(row)
