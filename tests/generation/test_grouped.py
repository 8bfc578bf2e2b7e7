"""Decoding in groups of rows on threads: the same tokens where the rows and seeds are the
same, rows back in their order, each group its own seed."""

from __future__ import annotations

import numpy as np
import pytest

from pianoacc_utils.common import PianoaccError
from pianoacc_utils.generation import (
    CachedDecoder,
    GroupedDecoder,
    SamplingConfig,
    group_seed,
    pad_melodies,
)
from pianoacc_utils.generation.grouped import SEED_STRIDE, default_groups

from tests.generation.test_rerank import note_model

SAMPLING = SamplingConfig(temperature=1.0, top_p=None, seed=5)
LIMIT = 64  # grid steps per row


def rows(count: int) -> dict:
    """``count`` rows of the same short window: a melody, an empty primer, a limit."""
    melody = pad_melodies([[60 + i % 12 for i in range(20)]] * count, 64)
    return dict(melody=melody, primers=[[]] * count, limits=[LIMIT] * count, max_length=96)


@pytest.fixture(scope="module")
def model():
    return note_model()


def test_one_group_or_one_row_gives_the_plain_decoders_tokens(model):
    plain = CachedDecoder(model, SAMPLING).decode(**rows(1))
    assert GroupedDecoder(model, SAMPLING, groups=1).decode(**rows(1)) == plain
    assert GroupedDecoder(model, SAMPLING, groups=2).decode(**rows(1)) == plain
    four = rows(4)
    assert GroupedDecoder(model, SAMPLING, groups=1).decode(**four) == CachedDecoder(
        model, SAMPLING).decode(**four)


def test_each_group_decodes_its_slice_with_its_own_seed_in_order(model):
    grouped = GroupedDecoder(model, SAMPLING, groups=2)
    tokens = grouped.decode(**rows(4))
    first = CachedDecoder(model, SAMPLING).decode(**rows(2))
    second = CachedDecoder(model, SamplingConfig(temperature=1.0, top_p=None,
                                                 seed=5 + SEED_STRIDE)).decode(**rows(2))
    assert tokens == first + second
    assert first != second, "the groups should sample differently"
    assert len(grouped.timings) == 1 and grouped.timings[0].compiled
    grouped.decode(**rows(4))
    assert not grouped.timings[1].compiled  # the same shapes: no new program


def test_seeds_and_group_counts():
    assert group_seed(7, 0) == 7 and group_seed(7, 2) == 7 + 2 * SEED_STRIDE
    assert group_seed(None, 1) is None
    assert 1 <= default_groups() <= 2
    with pytest.raises(PianoaccError, match="decoding groups 0"):
        GroupedDecoder(None, SAMPLING, groups=0)


def test_rows_not_divisible_by_the_groups_are_all_decoded(model):
    tokens = GroupedDecoder(model, SAMPLING, groups=2).decode(**rows(3))
    assert len(tokens) == 3 and all(isinstance(t, list) for t in tokens)
    assert np.all([len(t) > 0 for t in tokens])
