"""The loop 2.x scripts use to read a dataset to its end, run unchanged under both libraries.

``python read_loop_2x.py STORE_DIR`` writes 25 records, reads them back with
``try: ds.read() except EOFError: break`` (whole dataset, a slice, after a seek) and
prints the records read as JSON.
"""

import json
import sys

try:
    import kara_core as kara_storage
except ImportError:
    import kara_storage

storage = kara_storage.KaraStorage("file://" + sys.argv[1])
ds = storage.open_dataset("loop", "rows", "w", version="1")
for i in range(25):
    ds.write({"i": i})
ds.close()


def drain(ds):
    out = []
    while True:
        try:
            out.append(ds.read()["i"])
        except EOFError:
            break
    return out


ds = storage.open_dataset("loop", "rows", "r")
whole = drain(ds)
again = drain(ds)  # still at the end: EOFError at once, every time
ds.seek(20)
tail = drain(ds)
part = drain(ds.slice(5, 3))
iterated = [record["i"] for record in ds.slice(22)]
print(json.dumps({"whole": whole, "again": again, "tail": tail, "part": part, "iterated": iterated}))
