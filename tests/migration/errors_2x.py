"""Run the documented 2.x calls that fail and print which builtin exceptions each raised.

Runs unchanged under kara-storage 2.1.5 and under kara (``import kara_core as
kara_storage``): ``python errors_2x.py STORE_DIR [HTTP_URL]`` prints one JSON object,
scenario name -> the builtin exception classes in the raised exception's MRO.
The tests compare the two outputs scenario by scenario.
"""

import json
import os
import sys

try:
    import kara_core as kara_storage
except ImportError:
    import kara_storage

STORE_DIR = sys.argv[1]
HTTP_URL = sys.argv[2] if len(sys.argv) > 2 else None
storage = kara_storage.KaraStorage("file://" + STORE_DIR)

ds = storage.open_dataset("ns", "rows", "w", version="v1")
for i in range(5):
    ds.write({"i": i})
ds.close()
folder = os.path.join(STORE_DIR, "..", "folder")
os.makedirs(folder, exist_ok=True)
with open(os.path.join(folder, "a.txt"), "w") as fh:
    fh.write("a")
storage.save_directory("ns", "dir", folder, progress_bar=False)


def reader():
    return storage.open_dataset("ns", "rows", "r")


def closed_reader():
    ds = reader()
    ds.close()
    return ds


def closed_writer():
    ds = storage.open_dataset("ns", "rows", "w", version="v2")
    ds.close()
    return ds


def writer():
    return storage.open_dataset("ns", "rows", "w", version="v3")


def at_end():
    ds = reader()
    for _ in range(5):
        ds.read()
    return ds


def at_end_by_seek():
    ds = reader()
    ds.seek(0, 2)
    return ds


SCENARIOS = {
    "read_after_close": lambda: closed_reader().read(),
    "seek_after_close": lambda: closed_reader().seek(0),
    "pread_after_close": lambda: closed_reader().pread(0),
    "write_after_close": lambda: closed_writer().write({"x": 1}),
    "flush_after_close": lambda: closed_writer().flush(),
    "read_past_the_end": lambda: at_end().read(),
    "read_after_seek_to_the_end": lambda: at_end_by_seek().read(),
    "pread_past_the_end": lambda: reader().pread(5),
    "index_past_the_end": lambda: reader()[5],
    "index_with_a_string": lambda: reader()["0"],
    "read_in_write_mode": lambda: writer().read(),
    "tell_in_write_mode": lambda: writer().tell(),
    "slice_in_write_mode": lambda: writer().slice(0, 1),
    "write_in_read_mode": lambda: reader().write({"x": 1}),
    "open_a_missing_dataset": lambda: storage.open_dataset("ns", "nothing", "r"),
    "open_a_missing_version": lambda: storage.open_dataset("ns", "rows", "r", version="v9"),
    "create_without_a_version": lambda: storage.open_dataset("ns", "new", "w"),
    "row_meta_of_a_missing_dataset": lambda: storage.get_row_meta("ns", "nothing"),
    "object_meta_of_a_missing_key": lambda: storage.get_object_meta("ns", "nothing"),
    "load_a_missing_key": lambda: storage.load_directory("ns", "nothing", folder, progress_bar=False),
    "load_a_missing_version": lambda: storage.load_directory("ns", "dir", folder, version="9", progress_bar=False),
    "save_a_missing_folder": lambda: storage.save_directory("ns", "dir2", folder + "-absent", progress_bar=False),
    "unknown_scheme": lambda: kara_storage.KaraStorage("ftp://host/path"),
    "raw_serializer_given_a_dict": lambda: storage.open_dataset(
        "ns", "raw", "w", version="1", serialization=kara_storage.serialization.NoSerializer()
    ).write({"x": 1}),
    "json_serializer_given_an_object": lambda: writer().write(object()),
}
if HTTP_URL:
    remote = kara_storage.KaraStorage(HTTP_URL)
    SCENARIOS.update(
        {
            "http_open_for_writing": lambda: remote.open_dataset("ns", "rows", "w", version="v4"),
            "http_save_directory": lambda: remote.save_directory("ns", "dir", folder, progress_bar=False),
            "http_open_a_missing_dataset": lambda: remote.open_dataset("ns", "nothing", "r"),
        }
    )


def builtins_raised(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the point is to see every kind
        skip = {"object", "BaseException", "Exception"}
        return sorted(c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins" and c.__name__ not in skip)
    return None


print(json.dumps({name: builtins_raised(call) for name, call in SCENARIOS.items()}))
