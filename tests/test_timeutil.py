"""Stored times: to_stored is strftime of STORED_FORMAT; from_stored (a fast path for the stored form)
reads exactly what strptime reads."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring_service.domain.timeutil import STORED_FORMAT, from_stored, to_stored

ZONES = st.sampled_from([timezone.utc, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30)),
                         timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])


@settings(max_examples=500, deadline=None)
@given(st.datetimes(timezones=ZONES))
def test_stored_text_is_strftimes_and_reads_back(moment):
    try:
        utc = moment.astimezone(timezone.utc)
    except OverflowError:  # no UTC equivalent: refused before anything is stored
        return
    text = to_stored(moment)
    assert text == utc.strftime(STORED_FORMAT)
    if utc.year >= 1000:  # strptime cannot read strftime's unpadded years below 1000 back
        back = from_stored(text)
        assert back == datetime.strptime(text, STORED_FORMAT).replace(tzinfo=timezone.utc) == moment
        assert back.tzinfo is timezone.utc


def test_stored_text_is_fixed_width_and_sorts_in_time_order():
    moments = [datetime(2018, 9, 1, 8, tzinfo=timezone(timedelta(hours=8))),
               datetime(2018, 9, 1, 0, 0, 0, 1, tzinfo=timezone.utc),
               datetime(2019, 1, 1, tzinfo=timezone(timedelta(hours=-5)))]
    texts = [to_stored(m) for m in moments]
    assert texts == ["2018-09-01T00:00:00.000000Z", "2018-09-01T00:00:00.000001Z", "2019-01-01T05:00:00.000000Z"]
    assert sorted(texts) == texts


def test_a_naive_time_is_refused():
    with pytest.raises(ValueError, match="naive"):
        to_stored(datetime(2018, 9, 1))


@pytest.mark.parametrize("text", [
    "2018-08-31T16:00:00.000-01Z",  # an offset: fromisoformat took it and the time was read an hour off
    "2018-08-31T16:00:00.000+08Z",
    "2018-W35-5T16:00:00.000000Z",  # an ISO week date
    "2018-08-31 16:00:00.000000Z",  # a space for the T
    "2018-08-31T16:00:00,000000Z",  # a decimal comma
    "2018-08-31T16:00:00.00000ZZ",
])
def test_text_of_the_stored_length_that_strptime_refuses_is_refused(text):
    with pytest.raises(ValueError):
        datetime.strptime(text, STORED_FORMAT)
    with pytest.raises(ValueError):
        from_stored(text)


def test_text_strptime_reads_outside_the_fast_form_reads_the_same():
    text = "\uff12018-08-31T16:00:00.000000Z"  # a full-width digit: strptime's %Y takes any decimal digit
    assert from_stored(text) == datetime(2018, 8, 31, 16, tzinfo=timezone.utc)
