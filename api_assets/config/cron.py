"""Cron expressions of `schedule:`, checked when the file is read (five fields, names and
macros), so that a bad schedule is a line of `api-assets validate`, not a Dagster error."""


# --- cron ------------------------------------------------------------------------------------

_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_CRON_FIELDS: list[tuple[str, int, int, dict[str, int]]] = [
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    ("day of week", 0, 7, {d: i for i, d in enumerate(_DAYS)}),
]


def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a standard 5-field cron (None when it is).

    Accepts numbers, `*`, ranges `a-b`, steps `/n`, lists `a,b`, month and weekday names, and
    the macros `@hourly`, `@daily`, ...: a subset of what Dagster's schedules accept.
    """
    if expression.strip().lower() in _CRON_MACROS:
        return None
    parts = expression.split()
    if len(parts) != 5:
        return (
            "expected a cron expression of 5 fields (minute hour day-of-month month "
            f"day-of-week), such as '0 3 * * *'; found {len(parts)} field(s)"
        )
    singles: list[int | None] = []
    for part, (label, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        problem = _cron_field_problem(part.lower(), low, high, names)
        if problem:
            return f"cron field {label} ({low}-{high}): {problem}"
        singles.append(int(part) if _digits(part) else names.get(part.lower()))
    # Dagster refuses a schedule that can never fire
    if singles[3] == 2 and singles[2] in (30, 31):
        return "this cron never fires (February has no day 30 or 31)"
    return None


def _digits(token: str) -> bool:
    return token.isascii() and token.isdigit()


def _cron_field_problem(part: str, low: int, high: int, names: dict[str, int]) -> str | None:
    def number(token: str) -> int | None:
        if _digits(token):
            value = int(token)
            return value if low <= value <= high else None
        return names.get(token)

    for item in part.split(","):
        base, slash, step = item.partition("/")
        if slash and not (_digits(step) and 0 < int(step) <= high):
            return f"a step must be a number from 1 to {high}"
        if base == "*":
            continue
        first, dash, last = base.partition("-")
        start, end = number(first), number(last) if dash else None
        if start is None or (dash and end is None):
            return "expected *, a number in range, a range a-b, a step */n or a list a,b"
        if end == 0 and high == 7:
            end = 7  # `fri-sun`: Sunday closes a weekday range as 7
        if end is not None and end < start:
            return "a range must go from low to high"
    return None
