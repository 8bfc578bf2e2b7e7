"""Re-barring POP909 segments: four-beat bars turned into 3/4 or 2/4 for training.

POP909 is nearly all 4/4, so without these copies the models would meet almost no
bars of three or two beats; :func:`rebar` makes them from the data already there
(:class:`~pianoacc_utils.prepare.PrepareConfig` decides which share of the training
segments is re-barred). Times stay in grid steps.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence
import itertools
import numpy as np
from pianoacc_utils.common import PianoaccError
from pianoacc_utils.data.notes import Note, Span
from pianoacc_utils.data.pop909 import Segment
from pianoacc_utils.defaults import REBAR_METERS, STEPS_PER_BEAT


def rebar(seg: Segment, meter: str) -> Segment:
    """The segment with its four-beat bars turned into ``meter`` (one of
    :data:`~pianoacc_utils.defaults.REBAR_METERS`).

    POP909 is nearly all 4/4, so the models met few bars of other lengths; these
    re-barred copies teach them other meters without new data. ``"2/4"`` splits each
    four-beat bar in two (the music is unchanged, only the bar lines move).
    ``"3/4"`` cuts each four-beat bar's last beat out of melody, accompaniment and
    chords: notes starting in it are dropped, notes sounding into it end at the cut,
    notes held across it keep sounding after it, and later times move back one beat
    per cut. Bars of other lengths are left as they are; ``"4/4"`` returns ``seg``.
    """
    if meter not in REBAR_METERS:
        raise PianoaccError(f"meter {meter!r}: expected one of {', '.join(REBAR_METERS)}")
    if meter == "4/4":
        return seg
    bounds = list(seg.bar_starts) + [seg.num_steps]
    four = 4 * STEPS_PER_BEAT
    ends = [b for a, b in itertools.pairwise(bounds) if b - a == four]
    if not ends:
        return seg
    if meter == "2/4":
        halves = [end - four // 2 for end in ends]
        return replace(seg, bar_starts=sorted(set(seg.bar_starts) | set(halves)))
    cut_starts = np.array(ends, dtype=np.int64) - STEPS_PER_BEAT

    def warp(steps: Sequence[int]) -> list[int]:
        """Each step moved back by the cut time before it."""
        at = np.asarray(steps, dtype=np.int64).reshape(-1, 1)
        return (at[:, 0] - np.clip(at - cut_starts, 0, STEPS_PER_BEAT).sum(axis=1)).tolist()

    def notes(items: Sequence[Note]) -> list[Note]:
        starts = np.array([n.start for n in items], dtype=np.int64).reshape(-1, 1)
        in_cut = ((starts >= cut_starts) & (starts < cut_starts + STEPS_PER_BEAT)).any(axis=1)
        kept = [n for n, dropped in zip(items, in_cut) if not dropped]
        moved = zip(kept, warp([n.start for n in kept]), warp([n.end for n in kept]))
        return [n._replace(start=a, end=b) for n, a, b in moved if b > a]

    spans = zip(seg.chords, warp([s.start for s in seg.chords]), warp([s.end for s in seg.chords]))
    return replace(
        seg,
        num_steps=warp([seg.num_steps])[0],
        melody=notes(seg.melody),
        accompaniment=notes(seg.accompaniment),
        chords=[Span(a, b, s.label) for s, a, b in spans if b > a],
        bar_starts=warp(seg.bar_starts),
    )
