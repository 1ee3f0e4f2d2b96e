"""The evaluation time: the instant a report is stamped with, and the evaluation date it defaults to.

`evaluation_time` reads ``--timestamp`` or ``SOURCE_DATE_EPOCH`` (reproducible output) or the clock;
`evaluation_day` is its date in UTC, the evaluation date of a profile that gives no `evaluation_date`
(the date-relative derived facts, e.g. months since the end of BCMA-directed therapy, count to it).
"""

from __future__ import annotations

import datetime as _dt
import os

from cds.errors import InputError, printable, quoted

#: where the evaluation date of an evaluation came from (the report's `evaluation_date.source`)
FROM_PROFILE = "profile"
FROM_EVALUATION_TIME = "evaluation_time"
NOT_GIVEN = "not_given"


def evaluation_time(fixed: str | None = None) -> str:
    """ISO-8601 UTC time of the evaluation, e.g. ``2026-01-01T00:00:00Z``.

    Fixed by `fixed` (``--timestamp``: an ISO-8601 date-time; without a zone it
    is taken as UTC) or by ``SOURCE_DATE_EPOCH`` (seconds since 1970) for
    reproducible output. An unreadable value is an input error, never ignored.
    """
    if fixed is not None:
        try:
            moment = _dt.datetime.fromisoformat(fixed.strip())
        except ValueError:
            raise InputError(f"--timestamp: {quoted(fixed)} is not an ISO-8601 date-time (e.g. 2026-01-01T00:00:00Z)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_dt.UTC)
    elif "SOURCE_DATE_EPOCH" in os.environ:
        epoch = os.environ["SOURCE_DATE_EPOCH"].strip()
        if not epoch.isdigit():
            raise InputError(f"SOURCE_DATE_EPOCH: {quoted(epoch)} is not a whole number of seconds since 1970")
        try:
            moment = _dt.datetime.fromtimestamp(int(epoch), tz=_dt.UTC)
        except (OverflowError, OSError, ValueError):
            raise InputError(f"SOURCE_DATE_EPOCH: {printable(epoch)} is out of range") from None
    else:
        moment = _dt.datetime.now(tz=_dt.UTC)
    try:
        moment = moment.astimezone(_dt.UTC)
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is in the year 10000 in UTC
        raise InputError(f"--timestamp: {quoted(fixed)} is out of range (in UTC it must fall in the years 1-9999)") from None
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def evaluation_day(evaluated_at: str) -> str:
    """The UTC date (``YYYY-MM-DD``) of an `evaluation_time` stamp."""
    return evaluated_at[:10]
