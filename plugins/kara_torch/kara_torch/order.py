"""The position-only order machinery, which lives in the core (``kara_core.pipeline.order``).

Mixtures and packed views use it without torch; this module keeps the name kara-torch
has always imported it by.
"""

from __future__ import annotations

from kara_core.pipeline.order import EpochOrder, OrderCursor, RankPlan, ShuffleParams, worker_positions

__all__ = ["EpochOrder", "OrderCursor", "RankPlan", "ShuffleParams", "worker_positions"]
