"""Today's date for the rules that depend on it (SPEC §11: no milestone after today; the as-of date).

``today(ctx)`` is the app's ``TODAY`` setting when set (``SCORING_TODAY=2018-09-15``: tests and
demos fix the date for a whole app), else :func:`scoring_service.domain.timeutil.today_china`,
looked up through its module so a test can monkeypatch it.
"""

from __future__ import annotations

from datetime import date

from ..domain import timeutil
from .context import ServiceState


def today(ctx: ServiceState) -> date:
    fixed = ctx.setting("TODAY")
    if not fixed:
        return timeutil.today_china()
    if isinstance(fixed, date):
        return fixed
    try:
        return date.fromisoformat(str(fixed))
    except ValueError:
        raise ValueError(f"the TODAY setting must be a date (YYYY-MM-DD), got {fixed!r}") from None
