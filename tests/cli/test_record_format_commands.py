"""kara info shows a version's serializer and compression ratio; kara cat decodes zstd and numpy records."""

from __future__ import annotations

import json

import numpy as np
import pytest

import kara_core

RECORDS = [{"text": "a rather repetitive record " * 8, "i": i} for i in range(500)]


@pytest.fixture
def formats_url(tmp_path) -> str:
    """ns/plain (json), ns/packed (json+zstd), ns/arrays (numpy), ns/old (json, no sidecar as from 2.x)."""
    url = f"file://{tmp_path / 'store'}"
    storage = kara_core.KaraStorage(url)
    for key, name in (("plain", "json"), ("packed", "json+zstd"), ("old", "json")):
        with storage.open_dataset("ns", key, "w", "1", serialization=name) as ds:
            ds.write_many(RECORDS)
    storage.backend.delete("row/ns/old/1/.kara/version.json")
    with storage.open_dataset("ns", "arrays", "w", "1", serialization="numpy") as ds:
        ds.write_many([np.arange(4, dtype=np.int32), np.array(2.5), np.zeros((2, 2), dtype=np.uint8)])
    storage.close()
    return url


def test_info_shows_serializer_records_bytes_and_compression_ratio(kara, formats_url):
    facts = json.loads(kara("info", formats_url, "ns", "packed", "--kind", "row", "--json").stdout)[0]
    plain = json.loads(kara("info", formats_url, "ns", "plain", "--kind", "row", "--json").stdout)[0]
    assert facts["serializer"] == "json+zstd" and facts["sidecar"] is True
    assert facts["records"] == len(RECORDS)
    assert facts["compression_ratio"] == pytest.approx(plain["bytes"] / facts["bytes"], rel=0.05)
    assert facts["compression_ratio"] > 3
    text = kara("info", formats_url, "ns", "packed", "--kind", "row").stdout
    assert "format    json+zstd" in text and "ratio" in text


def test_info_of_an_uncompressed_or_2x_version_has_no_ratio(kara, formats_url):
    plain = json.loads(kara("info", formats_url, "ns", "plain", "--kind", "row", "--json").stdout)[0]
    old = json.loads(kara("info", formats_url, "ns", "old", "--kind", "row", "--json").stdout)[0]
    assert (plain["serializer"], plain["compression_ratio"]) == ("json", None)
    assert (old["serializer"], old["sidecar"]) == ("json", False)
    assert "no sidecar" in kara("info", formats_url, "ns", "old", "--kind", "row").stdout


def test_cat_decodes_compressed_records_without_being_told(kara, formats_url):
    result = kara("cat", formats_url, "ns", "packed", "--end", "3")
    assert result.exit_code == 0
    assert [json.loads(line) for line in result.stdout.splitlines()] == RECORDS[:3]


def test_cat_prints_arrays_as_json_lists_and_repr(kara, formats_url):
    lines = kara("cat", formats_url, "ns", "arrays").stdout.splitlines()
    assert [json.loads(line) for line in lines] == [[0, 1, 2, 3], 2.5, [[0, 0], [0, 0]]]
    reprs = kara("cat", formats_url, "ns", "arrays", "--format", "repr").stdout
    assert "array([0, 1, 2, 3], dtype=int32)" in reprs
