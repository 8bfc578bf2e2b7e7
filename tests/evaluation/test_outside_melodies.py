"""Melodies from outside POP909: folk tunes from the music21 corpus, metrics without
ground truth, evaluation of a checkpoint on melody files, and the notebooks' checkpoint choice."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from melodies import RESOLUTION, Track, simple_melody, tune, write_midi

from pianoacc_utils import cli, data, evaluation, generation, training
from pianoacc_utils.common import PianoaccError, write_json
from pianoacc_utils.course import checkpoints
from pianoacc_utils.data import Melody, MeterGrid, Note
from pianoacc_utils.defaults import STEPS_PER_BEAT
from pianoacc_utils.evaluation import reports

METERS = {"2/4", "3/4", "4/4", "6/8", "9/8", "2/2"}


def bar_steps(meter: str) -> int:
    """Grid steps of one bar of ``"numerator/denominator"``."""
    numerator, denominator = (int(x) for x in meter.split("/"))
    return numerator * 4 * STEPS_PER_BEAT // denominator


# --------------------------------------------------------------------------- folk melodies


@pytest.fixture(scope="module")
def folk_files(tmp_path_factory) -> list[Path]:
    return data.folk_melodies(tmp_path_factory.mktemp("folk"), count=12, seed=0)


def test_folk_melodies_load_with_the_bars_of_their_meter(folk_files):
    assert len(folk_files) == 12
    assert [p.name[:3] for p in folk_files] == [f"{i:02d}_" for i in range(1, 13)]
    meters, bar_counts, tempo_counts, pickups = set(), [], [], []
    for path, role in zip(folk_files, data.FOLK_TUNES):
        melody = data.load_melody(path)
        signatures = {f"{s.numerator}/{s.denominator}" for s in melody.midi.time_signature_changes}
        assert signatures == {role.meter}, path.name
        assert melody.track_name == "MELODY"
        lengths = np.diff(np.append(melody.grid.bar_starts, melody.end_step))
        # every bar has the meter's length; only the last may be cut short by the tune's end
        assert set(lengths[:-1].tolist()) == {bar_steps(role.meter)}, path.name
        assert 0 < lengths[-1] <= bar_steps(role.meter)
        meters.add(role.meter)
        bar_counts.append(melody.num_bars)
        tempo_counts.append(len(set(np.round(melody.midi.get_tempo_changes()[1], 3))))
        pickups.append(melody.notes[0].start > 0)
    assert meters == METERS
    assert max(bar_counts) >= 100
    assert max(tempo_counts) >= 2
    assert any(pickups)


def test_a_pickup_ends_on_the_first_bar_line_of_the_meter(tmp_path):
    from music21 import corpus, stream

    source = data.FOLK_TUNES[data.EXAMPLE_TUNE].sources[0]
    corpus_path, _, number = source.partition("#")
    score = corpus.parse(corpus_path, number=int(number))
    first_measure = score.parts[0].getElementsByClass(stream.Measure).first()
    pickup_steps = int(first_measure.duration.quarterLength * STEPS_PER_BEAT)
    assert pickup_steps > 0  # the example tune has a pickup

    melody = data.load_melody(data.example_melody(tmp_path / "example.mid"))
    bars = melody.grid.bar_starts
    assert bars[1] - melody.notes[0].start == pickup_steps  # the pickup fills the end of bar 0
    assert bars[1] == bar_steps("3/4")
    first_downbeat = [n for n in melody.notes if n.start >= bars[1]][0]
    assert first_downbeat.start == bars[1]
    tempi = melody.midi.get_tempo_changes()[1]
    assert len(tempi) == len(data.FOLK_TUNES[data.EXAMPLE_TUNE].tempi) >= 2
    # tempo changes fall on bar lines: every change time is the time of a bar start
    change_steps = melody.grid.to_steps(melody.midi.get_tempo_changes()[0])
    assert set(np.round(change_steps).astype(int).tolist()) <= set(bars.tolist()) | {0}


def test_folk_melodies_are_deterministic_and_follow_the_seed(tmp_path, folk_files):
    again = data.folk_melodies(tmp_path / "again", count=2, seed=0)
    assert [p.name for p in again] == [p.name for p in folk_files[:2]]
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in folk_files[:2]]
    other = data.folk_melodies(tmp_path / "other", count=2, seed=1)
    assert [p.read_bytes() for p in other] != [p.read_bytes() for p in again]
    with pytest.raises(PianoaccError, match="count must be 1..12"):
        data.folk_melodies(tmp_path, count=13)


# --------------------------------------------------------------------------- metrics


def grid_melody(
    notes: list[Note], bars: int = 4, beats_per_bar: int = 4, beat_seconds: float = 0.5
) -> Melody:
    """A melody on a regular grid: ``bars`` bars of ``beats_per_bar`` quarter notes."""
    beat_times = np.arange(bars * beats_per_bar + 2) * beat_seconds
    downbeats = np.arange(bars) * beats_per_bar
    grid = MeterGrid(beat_times, downbeats)
    end = max(n.end for n in notes)
    return Melody(Path("hand_made.mid"), None, 0, "MELODY", grid, notes, end)


def on_every_beat(bars: int = 4, beats_per_bar: int = 4, skip_bar: int | None = None) -> list[Note]:
    """A bass note (C3) on every beat, one beat long, leaving out ``skip_bar``."""
    return [
        Note(beat * STEPS_PER_BEAT, (beat + 1) * STEPS_PER_BEAT, 48, 80)
        for beat in range(bars * beats_per_bar)
        if skip_bar is None or beat // beats_per_bar != skip_bar
    ]


MELODY_NOTES = [Note(b * 16, b * 16 + 12, 72, 90) for b in range(8)]  # half notes, 4 bars of 4/4


def test_melody_metrics_of_an_accompaniment_on_every_beat():
    melody = grid_melody(MELODY_NOTES)
    metrics = evaluation.melody_metrics(melody, on_every_beat())
    assert list(metrics) == list(evaluation.MELODY_METRICS)
    assert metrics["silent_bar_share"] == 0.0
    assert metrics["grid_share"] == 1.0
    assert metrics["melody_grid_share"] == 1.0
    assert metrics["median_bar_offset"] == 0.0
    assert metrics["bars_off_share"] == 0.0
    assert metrics["melody_beat_coverage"] == 1.0
    assert metrics["notes_per_bar"] == 4.0
    # the accompaniment ends with the last beat (step 128), the melody at step 124
    assert metrics["ending_offset_bars"] == pytest.approx(4 / 32)


def test_melody_metrics_see_silent_bars_and_late_accompaniment():
    melody = grid_melody(MELODY_NOTES)
    metrics = evaluation.melody_metrics(melody, on_every_beat(skip_bar=2))
    assert metrics["silent_bar_share"] == pytest.approx(1 / 4)
    late = [n._replace(start=n.start + 1, end=n.end + 1) for n in on_every_beat()]  # a 32nd late
    metrics = evaluation.melody_metrics(melody, late)
    assert metrics["grid_share"] == 0.0
    assert metrics["median_bar_offset"] == pytest.approx(1 / 8)
    assert metrics["bars_off_share"] == 1.0
    empty = evaluation.melody_metrics(melody, [])
    assert empty["silent_bar_share"] == 1.0
    assert math.isnan(empty["grid_share"]) and math.isnan(empty["ending_offset_bars"])


def test_melody_grid_share_allows_triplets_within_the_tempo_tolerance():
    # eighth-note triplets quantized to 32nd notes: steps 0, 3, 5 of each beat
    triplets = [
        Note(beat * 8 + step, beat * 8 + step + 2, 72, 90)
        for beat in range(8)
        for step in (0, 3, 5)
    ]
    fast = grid_melody(triplets, bars=2, beat_seconds=0.5)  # 1/24 beat = 21 ms: within 30 ms
    slow = grid_melody(triplets, bars=2, beat_seconds=1.0)  # 1/24 beat = 42 ms: off the grid
    assert evaluation.melody_beat_seconds(fast) == pytest.approx(0.5)
    assert evaluation.melody_beat_seconds(slow) == pytest.approx(1.0)
    assert evaluation.melody_metrics(fast, on_every_beat(2))["melody_grid_share"] == 1.0
    slow_share = evaluation.melody_metrics(slow, on_every_beat(2))["melody_grid_share"]
    assert slow_share == pytest.approx(1 / 3)
    assert evaluation.grid_share(triplets, 0.5) == pytest.approx(1 / 3)  # sixteenths only
    assert math.isnan(evaluation.melody_grid_share([]))


# --------------------------------------------------------------------------- models on melodies


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny FNet saved like a training run (best.keras, config.json), 2-bar windows."""
    from pianoacc_utils.models import ModelConfig, build_model

    import keras

    run = tmp_path_factory.mktemp("run")
    keras.utils.set_random_seed(0)  # the same untrained weights whatever ran before
    config = ModelConfig(
        kind="fnet", melody_length=64, accompaniment_length=96, hidden_dim=16, num_heads=2,
        intermediate_dim=32, encoder_layers=1, decoder_layers=1, dropout=0.0,
    )
    build_model(config).save(run / "best.keras")
    saved = {"kind": "fnet", "profile": {"prepare": {"bars_per_segment": 2}}}
    write_json(run / "config.json", saved)
    return run / "best.keras"


@pytest.fixture(scope="module")
def two_melodies(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("melodies")
    waltz = simple_melody(folder / "waltz.mid", bars=3, numerator=3, denominator=4, bpm=90)
    eighths = tune(12, RESOLUTION // 2, start=RESOLUTION)  # a one-beat rest, then eighths
    tempos = [(0, 120.0), (1920, 100.0)]  # slower from bar 2 on
    march = write_midi(folder / "march.mid", [Track(eighths, "MELODY")], tempos=tempos)
    return [waltz, march]


@pytest.fixture(scope="module")
def arrangements(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("arrangements")


@pytest.fixture(scope="module")
def tiny_result(tiny_checkpoint, two_melodies, arrangements) -> dict:
    sampling = generation.SamplingConfig(temperature=1.0, top_p=0.9, seed=3)
    return evaluation.evaluate_melodies(
        tiny_checkpoint, two_melodies, sampling, out_dir=arrangements
    )


def test_evaluate_melodies_with_a_tiny_model(tiny_checkpoint, tiny_result, arrangements):
    result = tiny_result
    json.dumps(result, allow_nan=False)  # JSON-ready: NaN already written as None
    assert result["checkpoint"] == str(tiny_checkpoint)
    assert result["sampling"]["seed"] == 3
    window = generation.checkpoint_window(tiny_checkpoint)
    assert result["window"] == {"bars": window.bars, "overlap_bars": window.overlap_bars}
    rows = {row["name"]: row for row in result["melodies"]}
    assert list(rows) == ["waltz", "march"]
    assert rows["waltz"]["meters"] == ["3/4"] and rows["waltz"]["bars"] == 3
    assert rows["march"]["meters"] == ["4/4"] and rows["march"]["bars"] == 2
    assert rows["march"]["tempo_bpm"] == pytest.approx([100.0, 120.0])
    for row in rows.values():
        assert list(row["metrics"]) == list(evaluation.MELODY_METRICS)
        assert row["metrics"]["melody_grid_share"] == 1.0
        arrangement = data.read_midi(arrangements / f"{row['name']}.mid")
        # an untrained model may play nothing in a short melody: its PIANO track is then
        # empty, and MIDI readers drop an empty track
        tracks = ["MELODY", "PIANO"] if row["notes"] else ["MELODY"]
        assert [i.name for i in arrangement.instruments] == tracks
        assert sum(len(i.notes) for i in arrangement.instruments[1:]) == row["notes"]
    assert any(row["notes"] for row in rows.values())
    for metric, median in result["medians"].items():
        values = [r["metrics"][metric] for r in rows.values() if r["metrics"][metric] is not None]
        assert median == (pytest.approx(float(np.median(values))) if values else None)
    table = evaluation.melodies_markdown({"fnet": result})
    assert "| waltz | 3/4 | 3 |" in table and "| march | 4/4 | 2 |" in table
    assert "**median**" in table


def test_evaluate_command_adds_the_melodies(
    tiny_checkpoint, two_melodies, tiny_result, tmp_path, monkeypatch, capsys
):
    calls = []

    def melodies_of(checkpoint, paths, sampling, **rules):  # generation itself is tested above
        calls.append((checkpoint, [Path(p).name for p in paths], sampling))
        return tiny_result

    def no_pop909(checkpoints, config, progress=True, teacher_forced=True):  # tested elsewhere
        result = evaluation.EvaluationResult(
            systems=["ground_truth", "fnet"], metrics=[], segments=[], per_segment={},
            summary={"ground_truth": {}, "fnet": {}}, overlap={},
        )
        teacher = {"loss": 1.0, "accuracy": 0.5, "perplexity": 2.7}
        model = {"checkpoint": str(checkpoints[0]), "generation_seconds": 0.0}
        models = {"fnet": {**model, "teacher_forced": teacher}}
        return result, {"segments": 0, "models": models}

    monkeypatch.setattr(reports, "evaluate_checkpoints", no_pop909)
    monkeypatch.setattr(reports, "quality_bar", lambda result, system, reference=None: [])
    monkeypatch.setattr(reports, "load_reference", lambda config: {"metrics": {}})
    monkeypatch.setattr(reports, "evaluate_melodies", melodies_of)
    out = tmp_path / "evaluation.json"
    folder = two_melodies[0].parent
    argv = [
        "evaluate", "--checkpoint", str(tiny_checkpoint), "--melodies", str(folder),
        "--json", str(out), "--temperature", "0.8", "--seed", "5",
    ]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "2 melodies from" in printed and "| waltz | 3/4 | 3 |" in printed
    assert calls == [
        (
            str(tiny_checkpoint),
            ["march.mid", "waltz.mid"],
            generation.SamplingConfig(temperature=0.8, seed=5),  # top-p: the default
        )
    ]
    saved = json.loads(out.read_text())
    assert saved["melodies"] == {"fnet": tiny_result}
    assert saved["details"]["models"]["fnet"]["teacher_forced"]["perplexity"] == 2.7
    assert evaluation.report_result(saved).systems == ["ground_truth", "fnet"]
    with pytest.raises(PianoaccError, match="not an evaluation report"):
        evaluation.report_result({"details": {}})

    assert cli.main(["evaluate", "--checkpoint", "x", "--melodies", str(tmp_path / "none")]) == 1
    assert "not a folder of melody MIDI files" in capsys.readouterr().err
    assert cli.main(["evaluate", "--melodies", str(folder)]) == 1
    assert "needs at least one --checkpoint" in capsys.readouterr().err


# --------------------------------------------------------------------------- checkpoint choice


def test_find_checkpoint_prefers_a_fresh_run_then_the_shipped_model(
    tmp_path, tiny_checkpoint, monkeypatch
):
    runs = tmp_path / "runs"
    (runs / "fnet").mkdir(parents=True)
    (runs / "fnet" / "best.keras").write_bytes(tiny_checkpoint.read_bytes())
    assert checkpoints.find_checkpoint("fnet", runs) == runs / "fnet" / "best.keras"

    root = tmp_path / "checkout"
    shipped = root / "pretrained" / "transformer" / "model.keras"
    shipped.parent.mkdir(parents=True)
    shipped.write_bytes(b"shipped")
    monkeypatch.setattr(checkpoints, "project_root", lambda: root)
    assert checkpoints.find_checkpoint("transformer", runs) == shipped
    assert checkpoints.find_checkpoint("fnet", runs) == runs / "fnet" / "best.keras"

    trained = []

    def fake_train(profile, kind, out, progress=True):
        trained.append((profile, kind, Path(out)))
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "best.keras").write_bytes(b"trained")

    monkeypatch.setattr(training, "train_or_reuse", fake_train)
    shipped.unlink()
    assert checkpoints.find_checkpoint("transformer", runs) == runs / "transformer" / "best.keras"
    assert trained == [("quick", "transformer", runs / "transformer")]
    with pytest.raises(PianoaccError, match="no fnet checkpoint"):
        checkpoints.find_checkpoint("fnet", tmp_path / "elsewhere", train_profile_if_missing=None)
    with pytest.raises(PianoaccError, match="model kind 'lstm'"):
        checkpoints.find_checkpoint("lstm", runs)


# --------------------------------------------------------------------------- listening to a segment


def test_write_segment_arrangement_plays_the_segment_at_the_song_tempo(pop909_dir, tmp_path):
    song = data.load_song("186", root=pop909_dir)
    seg = data.segment(song, bars=8)[2]
    path = data.write_segment_arrangement(song, seg, seg.accompaniment, tmp_path / "segment.mid")
    midi = data.read_midi(path)
    assert [i.name for i in midi.instruments] == ["MELODY", "PIANO"]
    assert len(midi.instruments[0].notes) == len(seg.melody)
    assert len(midi.instruments[1].notes) == len(seg.accompaniment)
    origin = int(song.grid.bar_starts[seg.first_bar])
    start, first, end = song.grid.to_seconds(
        np.array([origin, origin + seg.melody[0].start, origin + seg.num_steps], dtype=float)
    )
    onsets = sorted(n.start for n in midi.instruments[0].notes)
    assert onsets[0] == pytest.approx(first - start, abs=1e-3)
    assert max(n.end for i in midi.instruments for n in i.notes) <= end - start + 1e-3
