"""Storage behind one interface: SQLite (embedded default) and MongoDB."""

from .base import InspectionRows, Outcome, RoundCounts, Store, StoreError, open_store

__all__ = ["InspectionRows", "Outcome", "RoundCounts", "Store", "StoreError", "open_store"]
