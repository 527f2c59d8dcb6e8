"""The viewer's key handling and screen layout, without a terminal."""

from __future__ import annotations

import json

from kara_core.cli.render import display_width, line_text
from kara_core.cli.viewer import ViewerState, frame
from kara_core.serialization import JSONSerializer

RECORDS = [json.dumps({"i": i, "text": "第" + str(i) + "条" * 30, "xs": list(range(20))}).encode() for i in range(5)]


def make_state(index: int = 0) -> ViewerState:
    return ViewerState(
        read=RECORDS.__getitem__, count=len(RECORDS), serializer=JSONSerializer(), title="ns/k", index=index
    )


def test_next_and_previous_move_between_records():
    state = make_state()
    state.apply("next", 10, 40)
    state.apply("next", 10, 40)
    state.apply("prev", 10, 40)
    assert state.index == 1


def test_next_on_the_last_record_stays_and_says_so():
    state = make_state(4)
    assert state.apply("next", 10, 40)
    assert state.index == 4 and state.message == "end of dataset"


def test_bottom_and_top_scroll_within_the_record():
    state = make_state()
    state.apply("bottom", 10, 40)
    assert state.top == len(state.view.lines) - 10
    state.apply("top", 10, 40)
    assert state.top == 0


def test_scrolling_stops_at_the_edges_of_the_record():
    state = make_state()
    for _ in range(100):
        state.apply("down", 10, 40)
        state.apply("right", 10, 40)
    widest = max(display_width(line_text(line)) for line in state.view.lines)
    assert state.top == len(state.view.lines) - 10
    assert state.left == widest - 40 + 1


def test_moving_to_another_record_resets_scrolling():
    state = make_state()
    state.apply("down", 10, 40)
    state.apply("next", 10, 40)
    assert (state.top, state.left) == (0, 0)


def test_quit_returns_false():
    assert make_state().apply("quit", 10, 40) is False


def test_frame_fills_the_screen_and_no_line_is_wider_than_it():
    state = make_state()
    state.apply("right", 20, 33)
    screen = frame(state, 20, 33)
    assert len(screen) == 20
    assert all(display_width(line_text(line)) <= 33 for line in screen)
    assert "index 0 (1 of 5)" in line_text(screen[0])
    assert "[N]ext" in line_text(screen[-1])


def test_frame_after_the_terminal_grows_scrolls_back_so_no_space_is_wasted():
    state = make_state()
    state.apply("bottom", 10, 80)
    assert state.top > 0
    frame(state, 40, 80)
    assert state.top == 0


def test_empty_dataset_shows_a_note():
    state = ViewerState(read=RECORDS.__getitem__, count=0, serializer=JSONSerializer(), title="ns/k")
    screen = frame(state, 5, 40)
    assert "no records" in line_text(screen[1])
    assert state.apply("next", 3, 40)
