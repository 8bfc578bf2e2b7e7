"""The user's wait: ``pianoacc accompany`` of a 120-bar 4/4 melody, from the shell.

Writes a 120-bar 4/4 melody (:func:`write_melody`: a seeded walk over a C major scale,
quarter to half notes, 100 bpm), then runs the command as a separate process,
``--repeats`` times per configuration, and records

* ``wall``: seconds from launching the process to its exit, as the user waits;
* ``cpu``: user + system CPU seconds of that process (``getrusage``), which other
  processes on a shared machine hardly change, and which bounds the wall time of an
  idle machine from above when the work runs on one thread at a time;
* the command's own report (``--timings``: wall and CPU seconds of its start-up, that
  is the imports, of reading the melody and estimating its chords, of loading the
  model, of decoding, split into compiling and generating, and of writing), and
  ``outside``: the wall seconds the report cannot see (interpreter start and exit);
* the 1-minute load average before each run.

Configurations: the backend (``KERAS_BACKEND=tensorflow``, ``=jax``, or unset:
``default``, what the command picks itself) and the caches the command keeps between
runs (``PIANOACC_CACHE``: the kept decoding programs of
``pianoacc_utils.backends.exported``; ``JAX_COMPILATION_CACHE_DIR``: JAX's compiled
programs), both in a folder of their own:

* ``setup``: a fresh clone's first run. The README's set-up (``make setup``) installs
  the packages, compiles their bytecode and runs ``pianoacc prebuild``, which makes the
  decoding programs of the shipped FNet at the command's defaults
  (:mod:`pianoacc_utils.generation.prebuild`); so each run gets an empty folder that
  ``pianoacc prebuild`` fills first, untimed (a checkout without that command: nothing);
* ``cold``: an empty folder per run: a first run that nothing prepared (other sampling
  settings than the defaults, another model, or a package edited since the set-up).
  What a benchmark machine cannot empty, in both, is the operating system's file cache
  (the libraries were read by earlier runs);
* ``warm``: one folder per configuration, filled by an untimed run first.

TensorFlow keeps no such cache: its runs are all alike. The fastest run of each
configuration is its best estimate (other processes only add time); the spread is
reported too.

Each label (``--label``) keeps its own results, the machine they ran on (processor,
cores, library versions of the command's process) and a ``--note``; a new run adds to
the file, replacing only the configurations it measures under its label, so that the
numbers of other processors and of earlier code stay beside it.

``--arguments '...'`` gives the command more options (kept with the label's results).

``--source DIR`` runs the command from another checkout of the package (e.g. an older
commit unpacked with ``git archive COMMIT | tar -x -C DIR``) with this virtual
environment, to measure the wait before a change. ``--baseline DIR --baseline-label
NAME`` measures such a checkout in turns with this one, run by run, each under its own
label: the machines this project runs on can change speed by a tenth or more from one
minute to the next, so two labels measured one after the other compare poorly.

Run: ``.venv/bin/python benchmarks/accompany_wait.py`` (about 10 minutes on 2 CPU
cores); writes ``benchmarks/results/accompany_wait.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pretty_midi
from machine import load_average, processor, versions

LIBRARIES = ("jax", "jaxlib", "ml_dtypes", "keras", "keras-hub", "numpy", "tensorflow")
"""Libraries whose versions the command's process runs with (read without importing them)."""

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "accompany_wait.json"
CONFIGS = ("default/warm", "default/setup", "jax/warm", "jax/cold", "tensorflow/warm")
"""``backend/cache`` pairs measured by default (see the module docstring)."""

RUNNER = (
    "import sys; sys.path.insert(0, sys.argv[1]); sys.argv = ['pianoacc'] + sys.argv[2:]; "
    "from pianoacc_utils.cli import main; sys.exit(main())"
)
"""What the console script runs, with another checkout first on the path (``--source``)."""


def write_melody(path: Path, bars: int = 120, seed: int = 0, bpm: float = 100.0) -> Path:
    """A ``bars``-bar 4/4 melody MIDI at ``path``: a seeded random walk over two octaves
    of C major, each note an eighth to a half note long, one track named MELODY."""
    rng = np.random.default_rng(seed)
    scale = [60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79]
    beat = 60.0 / bpm
    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm)
    midi.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0))
    track = pretty_midi.Instrument(0, name="MELODY")
    degree, start, end = 4, 0.0, 4.0 * bars  # beats
    while start < end:
        length = min(float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0])), end - start)
        degree = int(np.clip(degree + rng.integers(-2, 3), 0, len(scale) - 1))
        track.notes.append(
            pretty_midi.Note(90, scale[degree], start * beat, (start + length) * beat - 0.01)
        )
        start += length
    midi.instruments.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))
    return path


def run_command(
    melody: Path, out: Path, backend: str, cache: Path, source: Path | None,
    extra: tuple[str, ...] = (),
) -> dict:
    """One ``pianoacc accompany`` process with its caches in ``cache``: wall and CPU
    seconds, its ``--timings`` report (``None`` when the checkout has no such option),
    the load average before it."""
    command = pianoacc_command(source, "accompany", str(melody), "-o", str(out), *extra)
    if command is None:
        raise RuntimeError(f"{source}: no accompany command")
    if "--timings" in cli_source(source):
        command.append("--timings")
    env = command_env(backend, cache)
    load, before = load_average()[0], resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    report = None
    for line in done.stderr.splitlines():
        if line.startswith("timings: "):
            report = json.loads(line[len("timings: "):])
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    row = {"wall": round(wall, 2), "cpu": round(cpu, 2), "load_before": load, "timings": report}
    if report is not None:
        row["outside"] = round(wall - report["total"]["wall"], 2)
    row["result"] = done.stdout.strip().splitlines()[-1]
    return row


def command_env(backend: str, cache: Path) -> dict[str, str]:
    """The environment of a ``pianoacc`` process with its caches in ``cache`` on
    ``backend`` (``default``: the one the command picks itself)."""
    env = {**os.environ, "PIANOACC_CACHE": str(cache),
           "JAX_COMPILATION_CACHE_DIR": str(cache / "jax"), "MPLBACKEND": "Agg"}
    env.pop("KERAS_BACKEND", None)
    if backend != "default":
        env["KERAS_BACKEND"] = backend
    return env


def cli_source(source: Path | None) -> str:
    """The command-line module of a checkout (``None``: this one), to read which commands
    and options it has."""
    cli = (source or ROOT) / "pianoacc_utils" / "cli"  # a package since evaluate moved
    return (cli / "__init__.py" if cli.is_dir() else cli.with_suffix(".py")).read_text()


def pianoacc_command(source: Path | None, name: str, *arguments: str) -> list[str] | None:
    """The process that runs ``pianoacc <name> <arguments>`` from a checkout (``None``:
    this one's installed command), or ``None`` where that checkout has no such command."""
    if source is None:
        return [str(Path(sys.executable).with_name("pianoacc")), name, *arguments]
    if f'"{name}"' not in cli_source(source):
        return None
    return [sys.executable, "-c", RUNNER, str(source), name, *arguments]


def prebuild(backend: str, cache: Path, source: Path | None) -> None:
    """What ``make setup`` makes for a first run: ``pianoacc prebuild`` into ``cache``
    (nothing for a checkout that has no such command)."""
    command = pianoacc_command(source, "prebuild")
    if command is None:
        return
    done = subprocess.run(command, capture_output=True, text=True, env=command_env(backend, cache),
                          cwd=ROOT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")


def measure(
    config: str, melody: Path, folder: Path, repeats: int, sources: dict[str, Path | None],
    extra: tuple[str, ...] = (),
) -> dict[str, dict]:
    """``repeats`` runs of one ``backend/cache`` configuration (the command given
    ``extra`` arguments) from each of ``sources`` (label: checkout, ``None`` for this
    one), taking turns run by run so that a machine that slows down for a while slows
    each alike; each label's runs and their summary."""
    backend, cache = config.split("/")
    runs: dict[str, list[dict]] = {label: [] for label in sources}
    for label, source in sources.items():
        if cache == "warm":  # fill the shared caches (and the OS's file cache) first
            run_command(melody, folder / f"{label}-warm-up.mid", backend,
                        folder / label / "cache", source, extra)
    for repeat in range(repeats):
        for label, source in sources.items():
            caches = folder / label / ("cache" if cache == "warm" else f"cache-{repeat}")
            if cache == "setup":
                prebuild(backend, caches, source)
            runs[label].append(run_command(melody, folder / f"{label}-{repeat}.mid", backend,
                                           caches, source, extra))
            row = runs[label][-1]
            print(f"  {label:<24} {config:<18} run {repeat + 1}: {row['wall']:6.2f} s wall, "
                  f"{row['cpu']:6.2f} s CPU (load {row['load_before']})", flush=True)
    return {label: summary(backend, cache, rows) for label, rows in runs.items()}


def summary(backend: str, cache: str, runs: list[dict]) -> dict:
    """The fastest, median and slowest of one configuration's runs, and the runs."""
    walls = [run["wall"] for run in runs]
    fastest = min(runs, key=lambda run: run["wall"])
    return {
        "backend": (fastest["timings"] or {}).get("backend", backend),
        "cache": cache,
        "wall_fastest": fastest["wall"],
        "wall_median": round(statistics.median(walls), 2),
        "wall_max": max(walls),
        "cpu_fastest": min(run["cpu"] for run in runs),
        "load_average_after": load_average(),
        "fastest": fastest,
        "runs": runs,
    }


def command_versions() -> dict:
    """The versions of :data:`LIBRARIES` that the command's process imports (this
    environment, with ``PYTHONPATH`` before it as the command sees it)."""
    script = (
        "import importlib.metadata as m, json, sys\n"
        "found = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(found))"
    )
    done = subprocess.run([sys.executable, "-c", script, *LIBRARIES], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)


def migrate(payload: dict) -> dict:
    """A results file written before each label kept its machine: its one machine goes
    to each of its labels, with a note on what its ``cold`` runs emptied, and its
    ``current`` label (the command on JAX with its caches, on that machine) is kept as
    ``jax-caches``."""
    machine = payload.pop("machine", None)
    labels = payload.get("labels", {})
    if machine is not None:
        for entry in labels.values():
            entry.setdefault("machine", machine)
            entry.setdefault("note", "cold: an empty JAX compilation cache only (the "
                             "checkout's cache/, with any kept decoding program, was kept)")
        if "current" in labels:
            labels["jax-caches"] = labels.pop("current")
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), metavar="BACKEND/CACHE")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bars", type=int, default=120)
    parser.add_argument("--source", type=Path, help="another checkout to run the command from")
    parser.add_argument("--label", default="current", help="name of these runs in the results")
    parser.add_argument("--note", help="what to know about these runs (kept with them)")
    parser.add_argument("--baseline", type=Path,
                        help="another checkout to measure in turns with this one's runs")
    parser.add_argument("--baseline-label", help="name of the baseline's runs")
    parser.add_argument("--baseline-note", help="what to know about the baseline's runs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--arguments", default="",
                        help="more arguments of the command, e.g. '--decode-groups 2'")
    args = parser.parse_args(argv)
    extra = tuple(shlex.split(args.arguments))

    if (args.baseline is None) != (args.baseline_label is None):
        parser.error("--baseline and --baseline-label go together")
    sources = {args.label: args.source}
    notes = {args.label: args.note}
    if args.baseline is not None:
        sources = {args.baseline_label: args.baseline, **sources}
        notes[args.baseline_label] = args.baseline_note
    payload = migrate(json.loads(args.out.read_text())) if args.out.is_file() else {}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        melody = write_melody(folder / "melody.mid", args.bars)
        print(f"{', '.join(sources)}: {args.bars}-bar melody, {args.repeats} runs per "
              "configuration")
        measured = {
            config: measure(config, melody, folder / config.replace("/", "-"), args.repeats,
                            sources, extra)
            for config in args.configs
        }
    machine = {"processor": processor(), **versions(), "command": command_versions()}
    for label, source in sources.items():
        entry = payload.setdefault("labels", {}).setdefault(label, {})
        if entry.get("machine", machine)["processor"] != machine["processor"]:
            raise SystemExit(f"label {label!r} holds runs of another processor: pick a new label")
        entry.update(
            source=str(source) if source else "this checkout",
            seconds=round(entry.get("seconds", 0.0) + time.perf_counter() - began, 1),
            machine=machine,
        )
        if len(sources) > 1:
            entry["measured_in_turns_with"] = [other for other in sources if other != label]
        if notes[label]:
            entry["note"] = notes[label]
        if extra:
            entry["arguments"] = list(extra)
        entry.setdefault("results", {}).update(
            {config: by_label[label] for config, by_label in measured.items()})
    payload.update(
        melody={"bars": args.bars, "meter": "4/4", "bpm": 100, "writer": "write_melody(seed=0)"},
        cold="empty PIANOACC_CACHE and JAX_COMPILATION_CACHE_DIR: a first run that nothing "
        "prepared (until `make setup` ran `pianoacc prebuild`, also a fresh clone's first run)",
        setup="empty PIANOACC_CACHE and JAX_COMPILATION_CACHE_DIR filled by `pianoacc prebuild` "
        "(untimed), as `make setup` fills them: a fresh clone's first run",
        goal_seconds={"setup": 10.0, "warm": 5.0},
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    for config, label, result in ((config, label, result) for config, by_label in measured.items()
                                  for label, result in by_label.items()):
        timings = result["fastest"]["timings"] or {}
        phases = ", ".join(
            f"{name} {row['wall']:.1f}" for name, row in timings.items()
            if isinstance(row, dict) and name != "total"
        )
        print(f"{label:<24} {config:<18} fastest {result['wall_fastest']:6.2f} s (median "
              f"{result['wall_median']:.2f}, max {result['wall_max']:.2f}; CPU "
              f"{result['cpu_fastest']:.2f} s) [{timings.get('backend', '?')}: {phases}]")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
