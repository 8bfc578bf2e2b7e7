"""The learned critic: a small convolutional network over piano-roll windows.

The feature critics of :mod:`~pianoacc_utils.evaluation.critic` read what we thought to
measure; this one reads the piano rolls of
:func:`~pianoacc_utils.generation.critic_features.window_roll` (the accompaniment's
onsets and sounding notes, the melody beside them) and finds its own features. It is
trained per cross-validation fold from the same initial weights, with a fixed seed.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from pianoacc_utils.generation.critic_features import ROLL_CHANNELS, ROLL_PITCHES, ROLL_STEPS

PREDICT_BATCH = 256
"""Windows per batch when the convolutional critic labels a fold's test windows."""


def roll_critic_model(seed: int = 0) -> keras.Sequential:
    """A small convolutional network that reads a window's piano roll (88 pitches x 64
    steps x 3 channels: :func:`~pianoacc_utils.generation.critic_features.window_roll`) and
    gives the probability that it is not the pianist's.

    The first layer's filters span an octave and two 32nd-note steps, moving by a major
    third and a sixteenth: each sees a chord's shape and whether an onset is on the
    sixteenth grid. Two more 3 x 3 layers with pooling see rhythms and voicings across the
    window; a single logistic unit reads their map, which keeps the register. About 4,700
    weights: a critic, not a model of music.
    """

    def init(offset: int) -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=seed + offset)

    return keras.Sequential(
        [
            keras.Input((ROLL_PITCHES, ROLL_STEPS, len(ROLL_CHANNELS))),
            keras.layers.Conv2D(8, (12, 2), strides=(4, 2), activation="relu",
                                kernel_initializer=init(0)),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu",
                                kernel_initializer=init(1)),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu",
                                kernel_initializer=init(2)),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(1, activation="sigmoid", kernel_initializer=init(3)),
        ],
        name="roll_critic",
    )


class RollCritic:
    """The convolutional critic, compiled once and reset to the same initial weights and
    optimizer state for every fold (a fresh network per fold would compile per fold,
    which costs more than its training).

    Each fold trains ``epochs`` passes in batches of ``batch_size`` windows over at most
    ``windows`` training windows; ``seed`` fixes the initial weights.
    """

    def __init__(self, seed: int = 0, epochs: int = 5, batch_size: int = 128,
                 windows: int = 1200) -> None:
        self.epochs, self.batch_size, self.windows = epochs, batch_size, windows
        self.model = roll_critic_model(seed)
        self.model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
        self.model.optimizer.build(self.model.trainable_variables)
        self.initial_weights = self.model.get_weights()
        self.initial_optimizer: dict[str, Any] = {}
        self.model.optimizer.save_own_variables(self.initial_optimizer)

    def fold_predictions(
        self, rolls: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
        seed: int,
    ) -> np.ndarray:
        """Train from the initial state on the ``train`` windows, then label the ``test``
        windows 0/1.

        At most ``windows`` training windows, drawn from ``seed``, keep the time bounded
        on a large evaluation; ``epochs`` passes over them in whole batches of
        ``batch_size`` (the few left over sit out that pass), in
        an order drawn from ``seed`` anew each pass. Every batch has one shape, so the
        network compiles once for all folds (JAX compiles anew for every new shape).
        """
        self.model.set_weights(self.initial_weights)
        self.model.optimizer.load_own_variables(self.initial_optimizer)
        rng = np.random.default_rng(seed)
        if len(train) > self.windows:
            train = rng.choice(train, self.windows, replace=False)
        targets = labels.astype(np.float32)
        size = min(self.batch_size, len(train))
        for _ in range(self.epochs):
            order = train[rng.permutation(len(train))]
            for first in range(0, len(order) - size + 1, size):
                batch = np.sort(order[first : first + size])
                self.model.train_on_batch(rolls[batch], targets[batch])
        padded = np.zeros((-(-len(test) // PREDICT_BATCH) * PREDICT_BATCH, *rolls.shape[1:]),
                          dtype=rolls.dtype)
        padded[: len(test)] = rolls[test]
        scores = self.model.predict(padded, batch_size=PREDICT_BATCH, verbose=0)[: len(test), 0]
        return (scores >= 0.5).astype(np.int64)
