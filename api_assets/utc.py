"""Times as they are stored and compared: aware datetimes in UTC, ISO 8601 on disk."""

from datetime import UTC, datetime


def iso_utc(dt: datetime | None) -> str | None:
    """An aware datetime as ISO 8601 in UTC (`2026-11-28T03:00:00+00:00`); naive means UTC."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).isoformat()


def parse_iso_utc(value: str | None) -> datetime | None:
    if value is None:
        return None
    dt = datetime.fromisoformat(value)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
