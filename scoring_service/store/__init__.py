"""Storage behind one interface: SQLite (embedded default) and MongoDB."""

from .base import Outcome, Store, StoreError, open_store

__all__ = ["Outcome", "Store", "StoreError", "open_store"]
