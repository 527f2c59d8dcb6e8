"""Write a store with the names 2.x allowed ('/' in namespaces and keys, '\\' in keys).

``python nested_names_2x.py STORE_DIR FOLDER`` runs unchanged under kara-storage 2.1.5
and under kara; it prints the records it wrote as JSON.
"""

import json
import sys

try:
    import kara_core as kara_storage
except ImportError:
    import kara_storage

storage = kara_storage.KaraStorage("file://" + sys.argv[1])
written = {}
for namespace, key in (("team/proj", "data"), ("ns", "back\\slash"), ("flat", "rows")):
    ds = storage.open_dataset(namespace, key, "w", version="v1")
    records = [{"name": namespace + "|" + key, "i": i} for i in range(7)]
    for record in records:
        ds.write(record)
    ds.close()
    written[namespace + "|" + key] = records
storage.save_directory("models/v2", "bert", sys.argv[2], version="0", progress_bar=False)
print(json.dumps(written))
