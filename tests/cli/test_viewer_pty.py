"""The viewer in a real pseudo-terminal (pexpect), its screen read back with pyte.

Each test starts ``kara_storage row URL view ...`` exactly as a user would, presses keys
as an xterm sends them, and checks what a VT100-compatible terminal shows.
"""

from __future__ import annotations

import curses
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte
import pytest

import kara_core
from kara_core.cli.render import display_width

SCRIPT = Path(sys.executable).parent / "kara_storage"
RECORDS = [{"i": i, "标题": f"第{i}条记录", "text": "中文字符" * 30, "items": list(range(30))} for i in range(4)]
PICKLED = [{(1, "元组"): {1, 2}}, b"\x00raw bytes"]
TIMEOUT = 15.0
QUIET = 0.15


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    url = f"file://{tmp_path_factory.mktemp('viewer') / 'store'}"
    storage = kara_core.KaraStorage(url)
    with storage.open_dataset("ns", "zh", "w", "1") as ds:
        ds.write_many(RECORDS)
    with storage.open_dataset("ns", "pk", "w", "1", serialization="pickle") as ds:
        ds.write_many(PICKLED)
    # As kara-storage 2.x wrote it: no sidecar, so nothing tells the viewer it is pickle.
    storage.backend.delete("row/ns/pk/1/.kara/version.json")
    storage.close()
    return url


def _keys() -> dict[str, str]:
    # What the terminal sends for each key once curses has switched it to keypad mode.
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        curses.setupterm("xterm-256color", devnull)
    finally:
        os.close(devnull)
    names = {"up": "kcuu1", "down": "kcud1", "left": "kcub1", "right": "kcuf1"}
    return {key: curses.tigetstr(cap).decode() for key, cap in names.items()}


KEYS = _keys()


class Terminal:
    """A child process on a pty, with a pyte screen fed from its output."""

    def __init__(self, args: list[str], rows: int = 24, cols: int = 80) -> None:
        env = dict(os.environ, TERM="xterm-256color", LANG="C.UTF-8", LC_ALL="C.UTF-8")
        env.pop("KARA_URL", None)
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.child = pexpect.spawn(str(SCRIPT), args, env=env, dimensions=(rows, cols))

    @property
    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def wait(self, ready: Callable[[list[str]], bool], what: str) -> list[str]:
        """Read output until ``ready(lines)`` holds and the screen is quiet; fail after TIMEOUT.

        Waiting for a quiet moment (no output for QUIET seconds) makes sure a frame is
        complete, not just begun, before the test looks at it.
        """
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                self.stream.feed(self.child.read_nonblocking(65536, timeout=QUIET))
                continue
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                break
            if ready(self.lines):
                return self.lines
        raise AssertionError(f"screen never showed {what}:\n" + "\n".join(self.lines))

    def wait_for(self, text: str) -> list[str]:
        return self.wait(lambda lines: any(text in line for line in lines), repr(text))

    def press(self, key: str) -> None:
        self.child.send(KEYS.get(key, key))

    def resize(self, rows: int, cols: int) -> None:
        self.screen.resize(rows, cols)
        self.child.setwinsize(rows, cols)

    def quit(self) -> int:
        self.press("q")
        self.child.expect(pexpect.EOF, timeout=TIMEOUT)
        self.child.close()
        return self.child.exitstatus

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)


@pytest.fixture
def term(store):
    opened: list[Terminal] = []

    def open_viewer(*extra: str, rows: int = 24, cols: int = 80, key: str = "zh") -> Terminal:
        t = Terminal(["row", store, "view", "ns", key, *extra], rows, cols)
        opened.append(t)
        return t

    yield open_viewer
    for t in opened:
        t.close()


def pretty(i: int, cols: int = 80) -> list[str]:
    """Record ``i`` as ``json.dumps(indent=4)`` lines, each cut to ``cols`` columns."""
    return [fit(line, cols) for line in json.dumps(RECORDS[i], indent=4, ensure_ascii=False).splitlines()]


def fit(line: str, cols: int) -> str:
    out = ""
    for ch in line:
        if display_width(out + ch) > cols:
            break
        out += ch
    return out


def test_opens_at_begin_with_pretty_json_and_chinese_text(term):
    t = term("--begin", "2")
    lines = t.wait_for("index 2 (3 of 4)")
    assert lines[1:5] == pretty(2)[:4]
    assert '"标题": "第2条记录"' in lines[3]


def test_wide_characters_are_never_cut_in_half_at_the_right_edge(term):
    t = term(cols=41)
    lines = t.wait_for("index 0")
    text_line = next(line for line in lines if '"text"' in line)
    # `    "text": "` is 13 columns; 28 more columns hold exactly 14 wide characters.
    assert text_line == '    "text": "' + ("中文字符" * 30)[:14]
    assert all(display_width(line) <= 41 for line in lines)


def test_n_moves_to_the_next_record_and_p_back(term):
    t = term()
    t.wait_for("index 0 (1 of 4)")
    t.press("n")
    assert '"标题": "第1条记录",' in t.wait_for("index 1 (2 of 4)")[3]
    t.press("p")
    t.wait_for("index 0 (1 of 4)")


def test_b_shows_the_bottom_of_the_record_and_t_the_top(term):
    t = term()
    t.wait_for("index 0")
    t.press("b")
    lines = t.wait(lambda lines: lines[-2] == "}", "the closing brace above the help line")
    assert lines[-3] == "    ]"
    t.press("t")
    t.wait(lambda lines: lines[1] == "{", "the opening brace on the first line")


def test_arrow_keys_scroll_down_and_right(term):
    t = term()
    t.wait_for("index 0")
    t.press("down")
    t.wait(lambda lines: lines[1] == pretty(0)[1], "the record scrolled by one line")
    t.press("right")
    shifted = [fit(line[4:], 80) for line in pretty(0, 1000)[1:4]]
    t.wait(lambda lines: lines[1:4] == shifted, "the record scrolled right by four columns")
    t.press("left")
    t.press("up")
    t.wait(lambda lines: lines[1] == "{", "the record back at its origin")


def test_a_wide_character_cut_by_the_left_edge_shows_as_a_space(term):
    t = term()
    t.wait_for("index 0")
    for _ in range(4):
        t.press("right")
    # Scrolled 16 columns: `    "text": "` is 13, so 中 fills 13-14 and 文 15-16; only
    # the right half of 文 is in view, shown as a space.
    lines = t.wait(lambda lines: any(line.startswith(" 字符中文") for line in lines), "the text line scrolled by 16")
    assert all(display_width(line) <= 80 for line in lines)


def test_json_is_coloured_by_token_kind(term):
    t = term()
    t.wait_for("index 0")
    row = t.screen.buffer[2]  # `    "i": 0,`
    # pyte names ANSI colour 3 (curses COLOR_YELLOW) "brown", after the VGA palette.
    assert (row[4].fg, row[9].fg) == ("cyan", "brown")
    title_row = t.screen.buffer[3]  # `    "标题": "第0条记录",`
    assert title_row[4].fg == "cyan" and title_row[12].fg == "green"


def test_resizing_the_terminal_redraws_to_the_new_size(term):
    t = term()
    t.wait_for("index 0")
    t.resize(10, 30)
    lines = t.wait(lambda lines: lines[9].startswith(" [N]ext") and lines[0].startswith(" ns/zh"), "a 10-row layout")
    assert lines[1:8] == pretty(0, 30)[:7]
    assert all(display_width(line) <= 30 for line in lines)


def test_q_quits_with_status_zero(term):
    t = term()
    t.wait_for("index 0")
    assert t.quit() == 0


def test_pickle_dataset_without_serialization_is_shown_as_hex_with_a_hint(term):
    t = term(key="pk", cols=120)
    lines = t.wait_for("00000000  80")
    assert "cannot decode as json" in lines[0] and "--serialization pickle" in lines[0]


def test_pickle_dataset_with_serialization_pickle_shows_the_objects(term):
    t = term("--serialization", "pickle", key="pk")
    assert t.wait_for("index 0")[1] == "{(1, '元组'): {1, 2}}"
    t.press("n")
    lines = t.wait_for("index 1")
    assert lines[1].startswith("00000000  00 72 61 77") and "10 bytes" in lines[0]
