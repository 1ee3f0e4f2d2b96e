"""FHIR date and dateTime values as calendar dates, keeping the precision they were given in.

A FHIR `date`/`dateTime` may be a year (``2021``), a month (``2021-06``), a day or an
instant. The importer works in calendar days: the date part as the sender wrote it (no
time-zone conversion: a dose at 23:30 local time is on that local day). A partial value
is a range: its earliest day is used for starts and its latest day for ends, and it is
written back with the precision it had (``2021-06`` stays ``2021-06``).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")


@dataclass(frozen=True, order=True)
class Day:
    """A calendar day with the precision of the value it came from ('year', 'month' or 'day')."""

    earliest: date
    latest: date
    precision: str

    def iso(self) -> str:
        if self.precision == "year":
            return f"{self.earliest.year:04d}"
        if self.precision == "month":
            return f"{self.earliest.year:04d}-{self.earliest.month:02d}"
        return self.earliest.isoformat()

    def profile_text(self) -> str:
        """As a profile date (``YYYY-MM-DD`` or ``YYYY-MM``; a year alone becomes its January)."""
        return self.iso() if self.precision != "year" else f"{self.earliest.year:04d}-01"


def parse_day(value: object) -> Day | None:
    """A Day from what fhir.resources gives for a date/dateTime (date, datetime or partial string)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        d = value.date()
        return Day(d, d, "day")
    if isinstance(value, date):
        return Day(value, value, "day")
    m = _PARTIAL.match(str(value))
    if not m:
        return None
    year, month, day = int(m.group(1)), m.group(2), m.group(3)
    if day is not None:
        d = date(year, int(month), int(day))
        return Day(d, d, "day")
    if month is not None:
        mo = int(month)
        return Day(date(year, mo, 1), date(year, mo, calendar.monthrange(year, mo)[1]), "month")
    return Day(date(year, 1, 1), date(year, 12, 31), "year")


def age_on(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
