"""Reranking: the trees as arrays, the reranker file, how candidates are scored and kept,
and what the shipped reranker prefers."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from pianoacc_utils import generation
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data import Note, load_song, segment
from pianoacc_utils.defaults import MAX_CANDIDATES
from pianoacc_utils.evaluation import EvaluationConfig, block_chord_baseline, runs
from pianoacc_utils.evaluation.critic import segment_piece
from pianoacc_utils.generation.critic_features import critic_windows, feature_names
from pianoacc_utils.generation import (
    CachedDecoder,
    Reranker,
    SamplingConfig,
    TreeEnsemble,
    WindowConfig,
    accompany,
    candidate_score,
    rerank,
    shipped_reranker,
)
from pianoacc_utils.models import ModelConfig, build_model
from pianoacc_utils.tokenizer import EventTokenizer

TOKENIZER = EventTokenizer()


def fitted_trees(seed: int = 0):
    """Small gradient-boosted trees on random data with missing values."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(seed)
    features = rng.normal(size=(400, 5))
    labels = (features[:, 0] + features[:, 1] ** 2 > 1).astype(int)
    features[rng.random(features.shape) < 0.1] = np.nan
    model = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=7, random_state=0)
    return model.fit(features, labels), features


def test_trees_as_arrays_give_scikit_learns_log_odds():
    model, features = fitted_trees()
    trees = TreeEnsemble.from_sklearn(model)
    assert len(trees.roots) == 30
    unseen = np.random.default_rng(1).normal(size=(50, 5))
    unseen[::7, 2] = np.nan
    for rows in (features, unseen):
        assert np.allclose(trees.decision(rows), model.decision_function(rows), atol=1e-9)


def shipped_like(tmp_path) -> Reranker:
    model, _ = fitted_trees()
    return Reranker(tuple(feature_names()), TreeEnsemble.from_sklearn(model))


def test_a_reranker_is_saved_and_loaded_whole(tmp_path):
    reranker = shipped_like(tmp_path)
    path = tmp_path / "reranker.npz"
    reranker.save(path)
    loaded = Reranker.load(path)
    rows = np.random.default_rng(2).normal(size=(20, len(feature_names())))
    assert loaded.features == reranker.features
    assert np.array_equal(loaded.trees.decision(rows), reranker.trees.decision(rows))


def test_a_missing_or_outdated_reranker_is_reported(tmp_path):
    with pytest.raises(PianoaccError, match="no reranker there"):
        Reranker.load(tmp_path / "absent.npz")
    outdated = Reranker(("an_old_feature",), shipped_like(tmp_path).trees)
    outdated.save(tmp_path / "old.npz")
    with pytest.raises(PianoaccError, match="train it again"):
        Reranker.load(tmp_path / "old.npz")


@pytest.mark.parametrize("candidates", [0, MAX_CANDIDATES + 1])
def test_the_number_of_candidates_is_checked(candidates):
    with pytest.raises(PianoaccError, match="candidates must be in"):
        rerank.check_candidates(candidates)


class Counting:
    """A stand-in reranker: a window scores ``sign`` times its accompaniment's notes, and
    every call's windows are kept."""

    def __init__(self, sign: float = 1.0) -> None:
        self.sign = sign
        self.calls: list[list] = []

    def window_scores(self, windows):
        self.calls.append(list(windows))
        return self.sign * np.array([len(w.accompaniment) for w in windows], np.float64)


def test_a_candidate_is_scored_on_two_bar_windows_from_its_first_bar():
    bar_starts = [0, 16, 32, 48, 64]
    melody = [Note(t, t + 4, 72, 80) for t in range(0, 80, 8)]
    notes = [Note(t, t + 2, 60, 80) for t in range(16, 80, 4)]  # 4 per bar from bar 2 on
    counting = Counting()
    assert candidate_score(counting, melody, notes, bar_starts, 16, 80, tonic=0) == 8.0
    assert [w.num_steps for w in counting.calls[-1]] == [32, 32]
    # three bars: a 2-bar window and the last bar alone (mean of 8 and 4 notes)
    assert candidate_score(counting, melody, notes, bar_starts, 16, 64, tonic=0) == 6.0
    assert [w.num_steps for w in counting.calls[-1]] == [32, 16]
    # no melody there: no window, score 0
    assert candidate_score(counting, [], notes, bar_starts, 16, 64, tonic=0) == 0.0


def note_model() -> object:
    """A tiny model whose logits are fixed: notes on and off among pitches 48..72 and short
    time shifts, no END (so that the candidates differ in how many notes they strike)."""
    keras.utils.set_random_seed(3)
    config = ModelConfig(kind="transformer", melody_length=64, accompaniment_length=128,
                         hidden_dim=32, num_heads=2, intermediate_dim=64, encoder_layers=1,
                         decoder_layers=1, dropout=0.0)
    model = build_model(config)
    bias = np.full(TOKENIZER.vocabulary_size, -10.0, np.float32)
    pitches = np.arange(48, 73)
    bias[TOKENIZER.note_on_offset + pitches] = 2.0
    bias[TOKENIZER.note_off_offset + pitches] = 2.0
    bias[TOKENIZER.time_shift_offset : TOKENIZER.time_shift_offset + 4] = 4.0
    kernel, _ = model.logits_layer.get_weights()
    model.logits_layer.set_weights([np.zeros_like(kernel), bias])
    return model


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_reranking_keeps_the_candidate_the_reranker_prefers(monkeypatch, sign):
    """One 2-bar window, 4 candidates: with a reranker that counts notes the densest
    candidate is kept, with one that counts them negatively the sparsest."""
    scores = []
    choose = rerank.choose
    monkeypatch.setattr(rerank, "choose", lambda found: scores.append(list(found)) or choose(found))
    model = note_model()
    melody = [Note(t, t + 4, 76, 80) for t in range(0, 32, 4)]
    decoder = CachedDecoder(model, SamplingConfig(temperature=1.0, top_p=None, seed=5))
    (notes,) = accompany(model, [(melody, [0, 16], 32)], window=WindowConfig(bars=2, overlap_bars=1),
                         decoder=decoder, candidates=4, reranker=Counting(sign))
    assert len(scores) == 1 and len(scores[0]) == 4
    counts = [sign * s for s in scores[0]]
    assert len(set(counts)) > 1, "the candidates should differ"
    assert len(notes) == (max(counts) if sign > 0 else min(counts))
    assert decoder.timings and len(decoder.timings) == 1  # one batched decoding of 4 rows


@pytest.mark.parametrize("model", ["fnet", "fnet-l"])
def test_the_shipped_rerankers_prefer_the_pianist_to_block_chords(pop909_dir, model):
    """On a validation song they never saw, the pianist's 2-bar windows score higher than
    block chords on every beat, on average and in most windows: for the shipped reranker
    and for ``fnet-l``'s own."""
    from pianoacc_utils import data

    song_id = data.split_songs(data.song_ids(pop909_dir))["validation"][0]
    song = load_song(song_id, root=pop909_dir)
    (whole,) = segment(song, bars=len(song.grid.bar_starts))
    piece = segment_piece(whole)
    reranker = generation.checkpoint_reranker(model)
    scores = {}
    for name, notes in (("pianist", piece.pianist), ("blocks", block_chord_baseline(whole))):
        windows = critic_windows(piece.melody, notes, piece.bar_starts, piece.num_steps,
                                 tonic=piece.tonic)
        scores[name] = reranker.window_scores(windows)
    assert len(scores["pianist"]) == len(scores["blocks"]) >= 10
    assert scores["pianist"].mean() > scores["blocks"].mean() + 1.0
    assert np.mean(scores["pianist"] > scores["blocks"]) > 0.8


def test_a_reranker_given_reaches_the_windows_of_segments_and_of_evaluations(
    monkeypatch, tmp_path
):
    """``accompany_segment`` passes the reranker it is given on to ``accompany``, and an
    evaluation with ``EvaluationConfig(reranker=FILE)`` reranks with the trees in FILE, not
    the shipped ones (how a retrained reranker is judged before it ships)."""
    module = importlib.import_module("pianoacc_utils.generation.accompany")

    seen = []
    monkeypatch.setattr(
        module, "accompany",
        lambda model, melodies, *args, **kwargs: seen.append(kwargs["reranker"]) or [[]],
    )
    segment_of = SimpleNamespace(melody=[], bar_starts=[0], num_steps=16)
    counting = Counting()
    module.accompany_segment(None, [segment_of], chords="none", reranker=counting)
    assert seen == [counting]

    path = tmp_path / "other.npz"
    shipped_like(tmp_path).save(path)
    used = []
    monkeypatch.setattr(generation, "load_checkpoint",
                        lambda checkpoint: (None, generation.WindowConfig()))
    monkeypatch.setattr(generation, "CachedDecoder", lambda model, sampling: None)
    monkeypatch.setattr(
        generation, "accompany_segment",
        lambda *args, **kwargs: used.append(kwargs["reranker"]) or [[] for _ in args[1]],
    )
    runs.generate_for_segments("fnet", [segment_of], EvaluationConfig(reranker=str(path)))
    runs.generate_for_segments("fnet", [segment_of], EvaluationConfig())
    runs.generate_for_segments("fnet", [segment_of], EvaluationConfig(candidates=1))
    assert isinstance(used[0], Reranker) and used[1] is shipped_reranker() and used[2] is None
    rows = np.random.default_rng(0).normal(size=(4, len(feature_names())))
    assert np.array_equal(used[0].trees.decision(rows), Reranker.load(path).trees.decision(rows))
    # A model with a reranker of its own is reranked by it unless another is named.
    own = tmp_path / "run"
    own.mkdir()
    (own / "model.keras").write_bytes(b"")  # found by name only: no model is loaded
    shipped_like(tmp_path).save(own / generation.OWN_RERANKER)
    runs.generate_for_segments(own, [segment_of], EvaluationConfig())
    assert isinstance(used[3], Reranker) and used[3] is not shipped_reranker()
    assert np.array_equal(used[3].trees.decision(rows), used[0].trees.decision(rows))


def test_a_model_is_reranked_by_its_own_reranker_where_it_has_one(tmp_path):
    """The reranker beside a model's weights chooses among its candidates (a reranker
    learns what its own model gets wrong); without one, the shipped reranker does. The
    shipped models: the two course models share the shipped reranker, ``fnet-l`` has its
    own, whose trees read today's critic features."""
    (tmp_path / "model.keras").write_bytes(b"")  # found by name only: no model is loaded
    shipped_file = generation.pretrained_dir() / generation.RERANKER_FILE
    assert generation.reranker_file(tmp_path / "model.keras") == shipped_file
    assert generation.checkpoint_reranker(tmp_path) is shipped_reranker()
    shipped_like(tmp_path).save(tmp_path / generation.OWN_RERANKER)
    assert generation.reranker_file(tmp_path) == tmp_path / generation.OWN_RERANKER
    assert generation.checkpoint_reranker(tmp_path / "model.keras") is not shipped_reranker()
    assert generation.candidate_reranker(tmp_path, 1) is None  # one candidate: nothing chooses
    named = generation.candidate_reranker(tmp_path, 8, tmp_path / generation.OWN_RERANKER)
    assert named.features == generation.candidate_reranker(tmp_path, 8).features
    assert {name: generation.reranker_file(name) == shipped_file
            for name in generation.PRETRAINED} == {"fnet": True, "transformer": True,
                                                  "fnet-l": False}
