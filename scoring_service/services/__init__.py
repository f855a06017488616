"""Use cases. Services take the store and settings explicitly and raise domain errors; no Flask here."""
