"""One timestamp format everywhere: RFC 3339 UTC, microseconds, `Z`. Fixed width, so it sorts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def iso(dt: datetime) -> str:
    """`FORMAT` (strftime's is twice as slow: a prediction's writes make several of these)."""
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse(value: str) -> datetime:
    """Parse any RFC 3339 / ISO 8601 timestamp (with Z, an offset or none = UTC)."""
    if len(value) == 27 and value[19] == "." and value[26] == "Z":  # `FORMAT`, what the platform writes
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    v = value.strip()
    if v.endswith("Z") or v.endswith("z"):
        v = v[:-1] + "+00:00"
    # Python < 3.12 accepts at most 6 fraction digits: trim nanoseconds
    if "." in v:
        head, _, rest = v.partition(".")
        frac = ""
        i = 0
        while i < len(rest) and rest[i].isdigit():
            frac += rest[i]
            i += 1
        v = f"{head}.{frac[:6] or '0'}{rest[i:]}"
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def add_seconds(ts: str, seconds: float) -> str:
    return iso(parse(ts) + timedelta(seconds=seconds))


def seconds_between(start: str, end: str) -> float:
    return (parse(end) - parse(start)).total_seconds()
