"""The full-screen record viewer of ``kara row URL view NS KEY`` (curses).

The screen is computed by pure code (:class:`ViewerState` and :func:`frame`), so key
handling and layout are unit-tested; :func:`run_viewer` only paints frames and reads keys.
"""

from __future__ import annotations

import locale
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..serialization import Serializer
from .render import Line, RecordView, clip_line, display_width, line_text, printable, render_record

if TYPE_CHECKING:
    import curses

__all__ = ["ViewerState", "frame", "run_viewer"]

HELP = "[N]ext [P]rev [T]op [B]ottom arrows:scroll PgUp/PgDn [Home]/[End]:first/last [Q]uit"
#: Columns moved by one press of Left/Right.
H_STEP = 4


@dataclass
class ViewerState:
    """What the viewer shows: which record, scrolled how far, and a status message.

    ``read(index)`` returns the stored bytes of record ``index``; ``serializer`` decodes
    them (records it cannot decode are shown as hex dumps).
    """

    read: Callable[[int], bytes]
    count: int
    serializer: Serializer
    title: str
    index: int = 0
    top: int = 0
    left: int = 0
    message: str = ""
    view: RecordView = field(default_factory=lambda: RecordView("empty", [[("(this dataset has no records)", "note")]]))

    def __post_init__(self) -> None:
        if self.count:
            self.goto(min(max(self.index, 0), self.count - 1))

    def goto(self, index: int) -> None:
        """Show record ``index`` from its first line."""
        self.index = index
        self.view = render_record(self.read(index), self.serializer)
        self.top = self.left = 0

    def apply(self, action: str, height: int, width: int) -> bool:
        """Apply one action for a body ``height`` lines by ``width`` columns; False means quit."""
        self.message = ""
        lines = len(self.view.lines)
        if action == "quit":
            return False
        if action in ("next", "prev", "first", "last") and self.count:
            target = {
                "next": self.index + 1,
                "prev": self.index - 1,
                "first": 0,
                "last": self.count - 1,
            }[action]
            if 0 <= target < self.count:
                if target != self.index:
                    self.goto(target)
            else:
                self.message = "end of dataset" if action == "next" else "start of dataset"
        elif action == "top":
            self.top = self.left = 0
        elif action == "bottom":
            self.top, self.left = max(0, lines - height), 0
        elif action == "up":
            self.top -= 1
        elif action == "down":
            self.top += 1
        elif action == "page_up":
            self.top -= max(1, height - 1)
        elif action == "page_down":
            self.top += max(1, height - 1)
        elif action == "left":
            self.left -= H_STEP
        elif action == "right":
            self.left += H_STEP
        self.clamp(height, width)
        return True

    def clamp(self, height: int, width: int) -> None:
        """Keep the scroll position inside the record (also after a resize)."""
        lines = self.view.lines
        self.top = min(max(self.top, 0), max(0, len(lines) - height))
        widest = max((display_width(line_text(line)) for line in lines), default=0)
        self.left = min(max(self.left, 0), max(0, widest - width + 1))


def frame(state: ViewerState, height: int, width: int) -> list[Line]:
    """Return the whole screen (``height`` lines, each at most ``width`` columns).

    Line 0 is the title bar, the last line the key help (or a message), and the rest the
    record, scrolled by ``state.top`` lines and ``state.left`` columns.
    """
    body = max(0, height - 2)
    state.clamp(body, width)
    position = f"index {state.index} ({state.index + 1} of {state.count})" if state.count else "empty"
    note = f"  [{state.view.kind}{': ' + state.view.note if state.view.note else ''}]"
    header = printable(f" {state.title}  {position}{note}")
    lines = state.view.lines
    shown = lines[state.top : state.top + body]
    end = state.top + len(shown)
    scroll = f" lines {state.top + 1}-{end}/{len(lines)}" if lines else ""
    footer = f" {state.message or HELP}{scroll}"
    screen: list[Line] = [clip_line([(header, "bar")], 0, width)]
    screen.extend(clip_line(line, state.left, width) for line in shown)
    screen.extend([] for _ in range(body - len(shown)))
    if height >= 2:
        screen.append(clip_line([(footer, "bar")], 0, width))
    return screen[:height]


_KEYS = {
    "n": "next",
    " ": "next",
    "p": "prev",
    "t": "top",
    "b": "bottom",
    "q": "quit",
    "g": "first",
    "G": "last",
    "k": "up",
    "j": "down",
    "h": "left",
    "l": "right",
}


def _action(key: int | str) -> str | None:
    import curses

    if isinstance(key, str):
        return _KEYS.get(key) or _KEYS.get(key.lower())
    return {
        curses.KEY_UP: "up",
        curses.KEY_DOWN: "down",
        curses.KEY_LEFT: "left",
        curses.KEY_RIGHT: "right",
        curses.KEY_PPAGE: "page_up",
        curses.KEY_NPAGE: "page_down",
        curses.KEY_HOME: "first",
        curses.KEY_END: "last",
    }.get(key)


def _use_utf8_locale() -> None:
    # curses encodes text with the locale's encoding; without a UTF-8 locale CJK text
    # cannot be drawn at all, so fall back to C.UTF-8 when the environment has none.
    locale.setlocale(locale.LC_ALL, "")
    if locale.getpreferredencoding(False).lower().replace("-", "") != "utf8":
        try:
            locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
        except locale.Error:
            pass


def run_viewer(state: ViewerState) -> None:
    """Run the viewer on the terminal until the user quits."""
    import curses

    _use_utf8_locale()
    # Arrow keys arrive as escape sequences; do not wait a full second after a lone ESC.
    os.environ.setdefault("ESCDELAY", "25")
    curses.wrapper(_loop, state)


def _styles() -> dict[str, int]:
    import curses

    styles = {"bar": curses.A_REVERSE, "note": curses.A_BOLD}
    if not curses.has_colors():
        return styles
    curses.start_color()
    try:
        curses.use_default_colors()
        background = -1
    except curses.error:
        background = curses.COLOR_BLACK
    palette = {
        "key": curses.COLOR_CYAN,
        "string": curses.COLOR_GREEN,
        "number": curses.COLOR_YELLOW,
        "literal": curses.COLOR_MAGENTA,
        "note": curses.COLOR_RED,
    }
    for pair, (style, colour) in enumerate(palette.items(), start=1):
        curses.init_pair(pair, colour, background)
        styles[style] = curses.color_pair(pair) | (curses.A_BOLD if style == "key" else 0)
    return styles


def _paint(stdscr: curses.window, screen: list[Line], styles: dict[str, int]) -> None:
    import curses

    height, width = stdscr.getmaxyx()
    stdscr.erase()
    for row, line in enumerate(screen):
        # The bottom-right cell cannot be written without curses raising.
        limit = width - (1 if row == height - 1 else 0)
        col = 0
        for text, style in line:
            piece = clip_line([(text, style)], 0, limit - col) if display_width(text) > limit - col else [(text, style)]
            if not piece or col >= limit:
                break
            try:
                stdscr.addstr(row, col, piece[0][0], styles.get(style, 0))
            except curses.error:
                pass  # a write that reaches the last cell still draws; curses only complains
            col += display_width(piece[0][0])
        if line and line[0][1] == "bar" and col < limit:
            try:
                stdscr.addstr(row, col, " " * (limit - col), styles["bar"])
            except curses.error:
                pass
    stdscr.refresh()


def _loop(stdscr: curses.window, state: ViewerState) -> None:
    import curses

    try:
        curses.curs_set(0)
    except curses.error:
        pass  # terminals without an invisible cursor still work
    styles = _styles()
    stdscr.keypad(True)
    while True:
        height, width = stdscr.getmaxyx()
        _paint(stdscr, frame(state, height, width), styles)
        key = stdscr.get_wch()
        if key == curses.KEY_RESIZE:
            curses.update_lines_cols()
            continue
        action = _action(key)
        if action is not None and not state.apply(action, max(0, height - 2), width):
            return
