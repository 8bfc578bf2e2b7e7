"""The listening page (``pianoacc report``, :mod:`pianoacc_utils.course.report`) opens from
``file://`` in a real headless Chromium: every player loads its audio with a duration, every
image loads, and the console shows no error.

The browser is Debian's ``chromium`` driven through ``chromium-driver`` by Selenium; the
:func:`browser` fixture installs both with ``apt-get`` when they are missing and this
process may (root), and fails with the command to run otherwise. Nothing is downloaded
by Selenium itself (``SE_OFFLINE``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pretty_midi
import pytest

from pianoacc_utils import cli
from pianoacc_utils.common import project_root
from pianoacc_utils.course import report
from pianoacc_utils.data.notes import Note

REPO = project_root()
PAGE = REPO / "docs" / "listen"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
PACKAGES = ("chromium", "chromium-driver")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1300,1000",
)
MAX_PAGE_BYTES = 10_000_000
"""The committed page, all files together, stays small enough to commit and to publish."""

pytestmark = pytest.mark.xdist_group("browser")  # one worker installs and runs Chromium


def install_chromium() -> None:
    """Debian's chromium and chromium-driver, installed when missing and possible."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    command = f"apt-get update && apt-get install -y {' '.join(PACKAGES)}"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], env=env,
                       capture_output=True)
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(f"the page test needs {CHROMIUM} and {CHROMEDRIVER}: run `{command}` as root")


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium under Selenium, its console kept for :func:`page_problems`."""
    install_chromium()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium must not fetch a driver or browser
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options, webdriver.ChromeService(str(CHROMEDRIVER)))
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


LOAD_MEDIA = """
const done = arguments[arguments.length - 1];
const audios = [...document.querySelectorAll("audio")];
const loaded = audios.map(a => a.readyState >= 1 || a.error ? null : new Promise(ok => {
  a.addEventListener("loadedmetadata", ok); a.addEventListener("error", ok); a.load(); }));
Promise.all(loaded).then(() => done({
  audio: audios.map(a => [a.getAttribute("src"), a.duration, a.error ? a.error.code : null]),
  images: [...document.images].map(i => [i.getAttribute("src"), i.complete, i.naturalWidth]),
}));
"""


def page_problems(driver, page: Path) -> tuple[list[str], dict]:
    """What is wrong with ``page`` in the browser: players without a finite duration > 0,
    images that did not load, console errors; and the media found."""
    driver.get_log("browser")  # drop what an earlier page logged
    driver.get(page.resolve().as_uri())
    media = driver.execute_async_script(LOAD_MEDIA)
    problems = [f"audio {src}: duration {duration}, error {error}"
                for src, duration, error in media["audio"]
                if error is not None or not (duration and 0 < duration < float("inf"))]
    problems += [f"image {src} did not load" for src, complete, width in media["images"]
                 if not complete or width <= 0]
    problems += [f"console: {entry['message']}" for entry in driver.get_log("browser")
                 if entry["level"] == "SEVERE"]
    return problems, media


def test_the_committed_page_plays_in_a_browser(browser):
    """docs/listen/index.html: every clip of report.json has a player that loads its MP3,
    every piano roll and the learning curves load, no console error; under 10 MB in all."""
    problems, media = page_problems(browser, PAGE / "index.html")
    assert not problems, "\n".join(problems)
    recorded = json.loads((PAGE / "report.json").read_text())
    clips = sum(len(piece["clips"]) for piece in recorded["pieces"])
    assert len(media["audio"]) == clips >= 20
    assert len(media["images"]) == clips + 1  # a roll per clip, and the learning curves
    songs = [p for p in recorded["pieces"] if p["title"].startswith("POP909")]
    assert len(songs) == len(recorded["config"]["songs"]) and all(
        p["clips"] == ["melody", "pianist", "FNet, lead sheet", "FNet, melody alone",
                       "Transformer, lead sheet", "Transformer, melody alone"] for p in songs
    )
    size = sum(p.stat().st_size for p in PAGE.rglob("*") if p.is_file())
    assert size < MAX_PAGE_BYTES, f"docs/listen holds {size / 1e6:.1f} MB"
    assert (REPO / "docs" / "listening_page.png").stat().st_size > 10_000


def tiny_clip(folder: Path) -> report.Clip:
    """One bar of C major: a melody over two chords, as a MIDI file and as notes."""
    melody = [Note(0, 16, 72, 90), Note(16, 32, 76, 90)]
    accompaniment = [Note(0, 32, 48, 70), Note(0, 32, 55, 70), Note(0, 32, 64, 70)]
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    for notes in (melody, accompaniment):
        track = pretty_midi.Instrument(program=0)
        track.notes = [pretty_midi.Note(n.velocity, n.pitch, n.start / 16, n.end / 16)
                       for n in notes]
        midi.instruments.append(track)
    path = folder / "tiny.mid"
    midi.write(str(path))
    return report.Clip("FNet, lead sheet", path, melody, accompaniment, [0, 32], 2.0)


def test_a_page_of_one_clip_plays_and_a_missing_file_shows(browser, tmp_path):
    """A page written from one clip loads in the browser; the same page without its MP3
    or its roll is reported (the check can fail)."""
    piece = report.Piece("tiny", "A tiny piece", "one bar", [tiny_clip(tmp_path)])
    page = report.write_page(tmp_path / "page", [piece])
    problems, media = page_problems(browser, page)
    assert not problems, "\n".join(problems)
    assert len(media["audio"]) == 1 and 2.0 <= media["audio"][0][1] < 3.0
    for folder in ("audio", "rolls"):
        shutil.rmtree(tmp_path / "page" / folder)
    problems, _ = page_problems(browser, page)
    assert any(p.startswith("audio") for p in problems)
    assert any(p.startswith("image") for p in problems)
    assert any(p.startswith("console") for p in problems)


def test_report_names_a_song_outside_the_test_split(tmp_path, capfd):
    """``pianoacc report`` builds the page in its own process and exits with its error."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["report", "--songs", "001", "--out", str(tmp_path)])
    assert exited.value.code == 1
    error = capfd.readouterr().err.strip()
    assert error == "pianoacc report: error: POP909 song 001: not in the test split"


def test_the_commands_never_load_the_page_and_its_plots():
    """Every command starts without the page's module (matplotlib, pandas: seconds at the
    start of ``pianoacc accompany``): ``pianoacc report`` runs it in its own process."""
    code = "import sys, pianoacc_utils.cli; print('pianoacc_utils.course.report' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert loaded.stdout.strip() == "False", loaded.stderr[-2000:]
