"""The viewer's pure layout: display widths, clipping, pretty JSON, hex dumps, decoding."""

from __future__ import annotations

import json
import pickle

from kara_core.cli.render import (
    char_width,
    clip_line,
    display_width,
    hexdump_lines,
    json_lines,
    line_text,
    looks_like_pickle,
    printable,
    render_record,
)
from kara_core.serialization import JSONSerializer, NoSerializer, PickleSerializer


def test_cjk_characters_are_two_columns_wide_and_ascii_one():
    assert [char_width(c) for c in "a中。\uff21"] == [1, 2, 2, 2]
    assert display_width("你好, world") == 4 + 7


def test_combining_marks_take_no_column():
    assert display_width("e\u0301") == 1


def test_clip_never_cuts_a_wide_character_in_half_at_the_left_edge():
    clipped = clip_line([("中文字", "string")], 1, 4)
    assert line_text(clipped) == " 文 "
    assert display_width(line_text(clipped)) == 4


def test_clip_pads_a_wide_character_that_does_not_fit_at_the_right_edge():
    assert line_text(clip_line([("ab中", "")], 0, 3)) == "ab "


def test_clip_keeps_styles_of_the_visible_segments():
    line = [('"k"', "key"), (": ", "punct"), ("1", "number")]
    assert clip_line(line, 1, 5) == [('k"', "key"), (": ", "punct"), ("1", "number")]


def test_pretty_json_text_matches_json_dumps_with_indent_four():
    value = {"text": "你好\n世界", "n": [1, 2.5, None, True], "empty": {}, "nested": {"a": []}}
    text = "\n".join(line_text(line) for line in json_lines(value))
    assert text == json.dumps(value, indent=4, ensure_ascii=False)


def test_pretty_json_colours_keys_strings_numbers_and_literals_differently():
    styles = {style for line in json_lines({"k": ["s", 1, None]}) for _, style in line}
    assert {"key", "string", "number", "literal", "punct"} <= styles


def test_hexdump_shows_offset_hex_and_ascii_like_hexdump_c():
    lines = hexdump_lines(b"Hello, kara!\x00\x01\xff" + b"x" * 4)
    assert lines[0] == "00000000  48 65 6c 6c 6f 2c 20 6b  61 72 61 21 00 01 ff 78  |Hello, kara!...x|"
    assert lines[1].startswith("00000010  78 78 78") and lines[1].endswith("|xxx|")
    assert lines[-1] == "00000013"


def test_printable_escapes_control_characters():
    assert printable("a\x1b[2Jb\tc") == "a\\x1b[2Jb\\tc"


def test_json_record_renders_as_pretty_json():
    view = render_record('{"标题": "中文"}'.encode(), JSONSerializer())
    assert view.kind == "json"
    assert [line_text(line) for line in view.lines] == ["{", '    "标题": "中文"', "}"]


def test_record_that_is_not_json_falls_back_to_a_hex_dump_with_a_note():
    raw = pickle.dumps({"a": 1})
    view = render_record(raw, JSONSerializer())
    assert view.kind == "hex"
    assert "cannot decode as json" in view.note and "--serialization pickle" in view.note
    assert line_text(view.lines[0]).startswith("00000000  80")


def test_pickled_plain_data_renders_as_json_and_other_objects_as_pprint():
    assert render_record(pickle.dumps({"a": [1, 2]}), PickleSerializer()).kind == "json"
    view = render_record(pickle.dumps({(1, 2): {3}}), PickleSerializer())
    assert view.kind == "python"
    assert line_text(view.lines[0]) == "{(1, 2): {3}}"


def test_raw_bytes_render_as_hex_dump():
    view = render_record(b"\x00\x01abc", NoSerializer())
    assert view.kind == "hex" and view.note == "5 bytes"


def test_pickle_detection():
    assert looks_like_pickle(pickle.dumps([1]))
    assert not looks_like_pickle(b'{"a": 1}')


def test_human_sizes_use_binary_units():
    from kara_core.cli.output import human_size

    assert [human_size(n) for n in (0, 1023, 1536, 5 * 1024**3)] == ["0 B", "1023 B", "1.5 KiB", "5.0 GiB"]
