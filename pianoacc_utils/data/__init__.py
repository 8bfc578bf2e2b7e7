"""Reading music into notes on a grid: POP909 songs, MIDI melodies, folk-tune examples.

Every time here is in *grid steps*: 8 steps per quarter-note beat (a 32nd-note grid)
laid on a song's own beats, so tempo changes never move a note off the grid. This
package stops at notes, bars, chords and keys (:class:`Note`, :class:`Song`,
:class:`Segment`); turning segments into the token arrays a model trains on is
:mod:`pianoacc_utils.prepare`.

- :mod:`~pianoacc_utils.data.notes`: the note, span and beat-grid types;
- :mod:`~pianoacc_utils.data.midi_file`: reading a MIDI file, errors naming the file;
- :mod:`~pianoacc_utils.data.pop909`: POP909 songs, segments, transposition, splits;
- :mod:`~pianoacc_utils.data.rebar`: 4/4 segments re-barred into 3/4 or 2/4;
- :mod:`~pianoacc_utils.data.melody_midi`: a melody from any MIDI file in, an arrangement out;
- :mod:`~pianoacc_utils.data.compound`: the swing time map for compound meters (6/8, 9/8);
- :mod:`~pianoacc_utils.data.examples`: folk-tune melodies to try the models on.
"""

from __future__ import annotations

from pianoacc_utils.data.notes import (
    PIANO_RANGE,
    Note,
    Span,
    BeatGrid,
    normalize_notes,
    notes_in,
    note_arrays,
)
from pianoacc_utils.data.midi_file import (
    read_midi,
)
from pianoacc_utils.data.pop909 import (
    POP909_URL,
    POP909_SHA256,
    NUM_SONGS,
    SPLIT_SEED,
    SPLIT_FRACTIONS,
    PINNED_TEST_SONGS,
    Song,
    Segment,
    find_pop909_dir,
    download_pop909,
    song_ids,
    read_beats,
    read_spans,
    quantize_notes,
    load_song,
    segment,
    transpose,
    split_songs,
)
from pianoacc_utils.data.rebar import (
    rebar,
)
from pianoacc_utils.data.melody_midi import (
    MELODY_TRACK_NAME,
    ARRANGEMENT_TRACK_NAME,
    MeterGrid,
    Melody,
    choose_melody_track,
    midi_grid,
    load_melody,
    melody_song,
    write_arrangement,
    write_segment_arrangement,
)
from pianoacc_utils.data.compound import (
    compound_unit,
    bar_units,
    TimeMap,
    melody_time_map,
)
from pianoacc_utils.data.examples import (
    FolkTune,
    FOLK_TUNES,
    EXAMPLE_TUNE,
    FOLK_VELOCITY,
    folk_melodies,
    example_melody,
)
