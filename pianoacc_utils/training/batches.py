"""Teacher-forced training batches: prepared token arrays -> padded model inputs and targets.

A prepared segment is a melody and an accompaniment of event tokens (no START/END, no
padding; :mod:`pianoacc_utils.prepare`). For training, :func:`teacher_forcing` turns the
accompaniment into the decoder's input ``START + tokens`` and the target ``tokens + END``,
shifted by one token, so that every position learns to predict the next token from the
true previous ones (all positions of a segment are trained in one pass).

Padding: token ids are right-padded with :data:`PAD_ID` (0), which the loss and metrics
ignore (:mod:`pianoacc_utils.training.loss`). A batch is padded only
to its own longest sequence rounded up to ``length_multiple`` tokens (fewer distinct
shapes to trace), and :class:`SegmentBatches` groups segments of similar length into a
batch, so little padding is computed. Every batch has ``batch_size`` rows (a short last
batch is filled with all-padding rows) so that the shapes split evenly over devices.
:func:`collate` does this padding for any list of segments; :func:`segment_batch` builds
one batch straight from POP909 segments, to look at a batch exactly as training sees it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import keras
import numpy as np

from pianoacc_utils import harmony
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data.pop909 import Segment
from pianoacc_utils.models.seq2seq import ModelConfig, pad_bar_lines
from pianoacc_utils.prepare import PreparedSplit
from pianoacc_utils.tokenizer import EventTokenizer

PAD_ID = EventTokenizer.pad_id


START_ID = EventTokenizer.start_id


END_ID = EventTokenizer.end_id


# --------------------------------------------------------------------------- batches


def teacher_forcing(
    accompaniment: Sequence[int], accompaniment_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Accompaniment tokens -> ``(decoder_input, target)``, both at most
    ``accompaniment_length`` tokens: ``START + acc`` and ``acc + END`` (truncated)."""
    tokens = np.asarray(accompaniment, dtype=np.int32)
    sequence = np.concatenate([[START_ID], tokens, [END_ID]]).astype(np.int32)
    return sequence[:-1][:accompaniment_length], sequence[1:][:accompaniment_length]


def padded_length(longest: int, multiple: int, limit: int) -> int:
    """``longest`` rounded up to a multiple of ``multiple`` tokens, at most ``limit``
    (and at least 1)."""
    rounded = -(-max(longest, 1) // multiple) * multiple
    return max(1, min(rounded, limit))


def pad_batch(sequences: Sequence[np.ndarray], length: int, rows: int | None = None) -> np.ndarray:
    """Right-pad int sequences with 0 into an ``(rows, length)`` int32 array
    (extra rows stay all padding; longer sequences are cut)."""
    out = np.zeros((rows or len(sequences), length), dtype=np.int32)
    for i, sequence in enumerate(sequences):
        n = min(len(sequence), length)
        out[i, :n] = sequence[:n]
    return out


def collate(
    melodies: Sequence[np.ndarray],
    decoder_inputs: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    harmony_tables: Sequence[np.ndarray],
    bar_lines: Sequence[Sequence[int]],
    model_config: ModelConfig,
    length_multiple: int = 16,
    rows: int | None = None,
    table_beats: int | None = None,
    bar_count: int | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Segments' sequences -> one batch ``(inputs, target)`` as the model takes it.

    Token ids are padded with :data:`PAD_ID` to the batch's longest sequence rounded up
    to ``length_multiple`` tokens (at most the model's ``melody_length`` /
    ``accompaniment_length``), harmony tables with no-chord rows to the longest table
    (beats) or to ``table_beats``, bar lines (grid steps) with
    :data:`~pianoacc_utils.models.NO_BAR` to the longest list or to ``bar_count`` (which
    must not be shorter than the batch's). ``rows``: batch rows (default: one per
    segment; extra rows are all padding).
    """
    melody_length = padded_length(
        max(len(m) for m in melodies), length_multiple, model_config.melody_length
    )
    decoder_length = padded_length(
        max(len(d) for d in decoder_inputs), length_multiple, model_config.accompaniment_length
    )
    rows = rows or len(melodies)
    inputs = {
        "melody": pad_batch(melodies, melody_length, rows),
        "decoder_input": pad_batch(decoder_inputs, decoder_length, rows),
        "harmony": harmony.pad_tables(harmony_tables, table_beats, rows=rows),
        "bars": pad_bar_lines(bar_lines, rows, width=bar_count),
    }
    return inputs, pad_batch(targets, decoder_length, rows)


def segment_batch(
    segments: Sequence[Segment], model_config: ModelConfig, length_multiple: int = 16
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One teacher-forced batch of POP909 segments, built the way training builds its batches.

    Tokenizes each segment's melody and accompaniment (as :func:`pianoacc_utils.prepare.prepare`
    does, without re-barring or transposing), applies :func:`teacher_forcing` and
    :func:`collate`: a fixed, small batch to look at, independent of any profile's data.
    """
    tokenizer = EventTokenizer()
    melodies, decoder_inputs, targets = [], [], []
    for seg in segments:
        melody = np.asarray(tokenizer.encode(seg.melody), dtype=np.int32)
        melodies.append(melody[: model_config.melody_length])
        pair = teacher_forcing(tokenizer.encode(seg.accompaniment), model_config.accompaniment_length)
        decoder_inputs.append(pair[0])
        targets.append(pair[1])
    tables = [harmony.beat_table(seg.chords, seg.num_steps) for seg in segments]
    bars = [np.asarray(seg.bar_starts, dtype=np.int32) for seg in segments]
    return collate(
        melodies, decoder_inputs, targets, tables, bars, model_config, length_multiple
    )


class SegmentBatches(keras.utils.PyDataset):
    """Teacher-forced, length-bucketed batches from a :class:`PreparedSplit`.

    Item ``i`` is ``({"melody": (B, Lm), "decoder_input": (B, La), "harmony": (B, NB, 24),
    "bars": (B, K)}, target (B, La))``: token ids int32 padded with 0 (see the module
    docstring), the harmony tables float32 padded with no-chord rows, and the bar lines
    int32 padded with :data:`~pianoacc_utils.models.NO_BAR`. With ``harmony_dropout`` > 0,
    that share of the rows (drawn anew each epoch) gets an all-zero table. With ``shuffle`` the
    sequences are shuffled each epoch, sorted by accompaniment length inside
    pools of ``pool_batches`` batches, and the batches shuffled; without it
    batches follow length order (validation). ``max_segments`` keeps a fixed
    seeded random subset. The order of an epoch's batches and its hidden chords are a
    function of ``(seed, epoch)`` alone, so a resumed run replays them exactly: ``epoch``
    sets the first epoch served and ``start_batch`` the batch it starts from (the rest
    of an interrupted epoch; later epochs are whole). With ``fixed_tables`` every batch's
    harmony tables and bar lines are padded to the split's longest, so that those inputs
    have one shape: under JAX each new input shape compiles the step again, and the
    token lengths (multiples of ``length_multiple``) already make a handful of shapes.
    """

    def __init__(
        self,
        split: PreparedSplit,
        model_config: ModelConfig,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        length_multiple: int = 16,
        pool_batches: int = 32,
        max_segments: int | None = None,
        epoch: int = 0,
        harmony_dropout: float = 0.0,
        start_batch: int = 0,
        fixed_tables: bool = False,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        if len(split) == 0:
            raise PianoaccError("prepared split is empty: no segments to train on")
        self.model_config = model_config
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.length_multiple = length_multiple
        self.pool_batches = pool_batches
        chosen = np.arange(len(split))
        if max_segments is not None and max_segments < len(split):
            chosen = np.sort(np.random.default_rng(seed).permutation(len(split))[:max_segments])
        self.melodies = [
            split.melody(i)[: model_config.melody_length].astype(np.int32) for i in chosen
        ]
        pairs = [
            teacher_forcing(split.accompaniment(i), model_config.accompaniment_length)
            for i in chosen
        ]
        self.decoder_inputs = [p[0] for p in pairs]
        self.targets = [p[1] for p in pairs]
        self.lengths = np.array([len(d) for d in self.decoder_inputs])
        self.harmony = [split.harmony_table(i) for i in chosen]
        self.bars = [split.bar_lines(i) for i in chosen]
        self.harmony_dropout = harmony_dropout
        self.table_beats = max(len(t) for t in self.harmony) if fixed_tables else None
        self.bar_count = max(max(len(b) for b in self.bars), 1) if fixed_tables else None
        self.seek(epoch, start_batch)

    @property
    def num_segments(self) -> int:
        return len(self.melodies)

    @property
    def num_tokens(self) -> int:
        """Target tokens (loss positions) in one epoch."""
        return int(self.lengths.sum())

    def seek(self, epoch: int, start_batch: int = 0) -> None:
        """Serve epoch ``epoch`` from its batch ``start_batch`` on (resume)."""
        self.epoch = epoch
        self._plan = self._make_plan()
        if not 0 <= start_batch < len(self._plan):
            raise PianoaccError(
                f"start batch {start_batch}: an epoch has {len(self._plan)} batches"
            )
        self.start_batch = start_batch

    def _make_plan(self) -> list[np.ndarray]:
        n, size = self.num_segments, self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return [order[i : i + size] for i in range(0, n, size)]
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n)
        pool = size * self.pool_batches
        batches = []
        for begin in range(0, n, pool):
            members = order[begin : begin + pool]
            members = members[np.argsort(self.lengths[members], kind="stable")]
            batches += [members[i : i + size] for i in range(0, len(members), size)]
        rng.shuffle(batches)
        return batches

    @property
    def batches_per_epoch(self) -> int:
        """Batches in a whole epoch (``len`` is what is left of the current one)."""
        return len(self._plan)

    def __len__(self) -> int:
        return len(self._plan) - self.start_batch

    def longest_lengths(self) -> np.ndarray:
        """Each item's longest accompaniment (tokens, before padding), in item order:
        which batch is typical, without collating any."""
        return np.array([int(self.lengths[m].max()) for m in self._plan[self.start_batch :]])

    def __getitem__(self, index: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        index += self.start_batch  # the batch's place in the whole epoch
        members = self._plan[index]
        inputs, target = collate(
            [self.melodies[i] for i in members],
            [self.decoder_inputs[i] for i in members],
            [self.targets[i] for i in members],
            [self.harmony[i] for i in members],
            [self.bars[i] for i in members],
            self.model_config,
            self.length_multiple,
            rows=self.batch_size,
            table_beats=self.table_beats,
            bar_count=self.bar_count,
        )
        if self.harmony_dropout > 0:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            tables = inputs["harmony"]
            tables[: len(members)][rng.random(len(members)) < self.harmony_dropout] = 0.0
        return inputs, target

    def on_epoch_end(self) -> None:
        self.seek(self.epoch + 1)

    def for_fit(self) -> Any:
        """What ``model.fit`` should get: this object, or under TensorFlow a
        ``tf.data.Dataset`` over it whose shapes leave the lengths open (Keras
        would otherwise fix them from the first two batches)."""
        if keras.backend.backend() != "tensorflow":
            return self
        import tensorflow as tf

        def epoch_batches() -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
            epoch = self.epoch
            for index in range(len(self)):
                yield self[index]
            self.seek(epoch + 1)  # the same epoch whenever this runs (prefetching)

        spec = tf.TensorSpec((self.batch_size, None), tf.int32)
        tables = tf.TensorSpec((self.batch_size, None, harmony.HARMONY_DIM), tf.float32)
        inputs = {"melody": spec, "decoder_input": spec, "harmony": tables, "bars": spec}
        dataset = tf.data.Dataset.from_generator(epoch_batches, output_signature=(inputs, spec))
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(self)))
        return dataset.prefetch(2)


# --------------------------------------------------------------------------- a typical batch


def padded_lengths(batches: Sequence[Any]) -> list[int]:
    """Each batch's padded accompaniment length (tokens), in ``batches``' order."""
    return [int(batches[i][1].shape[1]) for i in range(len(batches))]


def median_length_batch(
    batches: Sequence[Any], lengths: Sequence[int] | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The batch of median padded accompaniment length among ``batches`` (a
    :class:`SegmentBatches`, in its current epoch's order): a typical step to time,
    neither the shortest nor the longest. ``lengths``: their :func:`padded_lengths`, when
    the caller has them already."""
    lengths = padded_lengths(batches) if lengths is None else lengths
    return batches[int(np.argsort(lengths, kind="stable")[len(lengths) // 2])]


def typical_batch(batches: SegmentBatches) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The batch of median longest accompaniment among ``batches``, found without
    collating every batch (:meth:`SegmentBatches.longest_lengths`): the step a run takes
    most often."""
    lengths = batches.longest_lengths()
    return batches[int(np.argsort(lengths, kind="stable")[len(lengths) // 2])]
