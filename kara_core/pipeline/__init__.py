"""The pretraining data pipeline: mixtures of datasets and packed token views.

Both are *record views* (:mod:`kara_core.pipeline.sources`) over row datasets, ordered by
the position-only machinery of :mod:`kara_core.pipeline.order` (the one kara-torch uses),
so they work without torch and ``make_torch_dataset`` accepts them like a row dataset.
See docs/pipeline.md.
"""

from __future__ import annotations
