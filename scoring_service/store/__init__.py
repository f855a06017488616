"""Storage behind one interface: SQLite (embedded default) and MongoDB."""

from .base import AuditEvent, InspectionRows, Outcome, RoundCounts, Store, StoreError, open_store

__all__ = ["AuditEvent", "InspectionRows", "Outcome", "RoundCounts", "Store", "StoreError", "open_store"]
