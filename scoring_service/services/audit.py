"""Who did what: the audit events of writes (SPEC §3 "Every write is audited").

The HTTP layer describes each request once as an :class:`Actor`; a use case that
writes in one transaction with its audit event (survey submissions) hands the
store a ready :class:`~scoring_service.store.AuditEvent`, and marks the actor
as audited so nothing writes the event a second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..domain.timeutil import now_stored
from ..store import AuditEvent, Outcome

#: longest path kept in an audit event (paths are attacker-chosen text)
MAX_PATH = 256


@dataclass
class Actor:
    """The caller of one request: its key and the request that carries the write."""

    key_id: str | None
    role: str | None
    method: str
    path: str
    round_id: str | None = None
    request_id: str | None = None
    audited: bool = False

    def event(self, status: int, entity_type: str | None = None, entity_id: str | None = None,
              outcome: str | None = None, **detail) -> dict:
        """The audit event of this request with its result."""
        return {
            "at": now_stored(),
            "key_id": self.key_id,
            "role": self.role,
            "method": self.method,
            "path": self.path[:MAX_PATH],
            "round_id": self.round_id,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "status": status,
            "outcome": outcome or ("ok" if status < 400 else "refused"),
            "request_id": self.request_id,
            "detail": detail or None,
        }


def with_write(actor: Actor | None,
               describe: Callable[[list[Outcome]], tuple[int, str | None, str | None, str, dict]]
               ) -> AuditEvent | None:
    """An audit event for a store write that commits it with the data.

    ``describe(outcomes)`` gives (status, entity_type, entity_id, outcome, detail) once the
    store knows the write's outcomes; it is pure, so the store may call it inside its transaction.
    """
    if actor is None:
        return None

    def complete(outcomes: list[Outcome]) -> dict:
        status, entity_type, entity_id, outcome, detail = describe(outcomes)
        actor.audited = True
        return actor.event(status, entity_type, entity_id, outcome, **detail)

    return AuditEvent(complete)
