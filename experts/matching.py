# The ranking SQL is assembled from table names taken from model metadata and fixed fragments;
# every value is a bound parameter.
# ruff: noqa: S608
"""Who should mediate this case: the ranking of the expert pool, with its reasons.

Three layers, from pure to database:
- `parse_preferred_times` turns the parties' free text (工作日晚上, 周六上午, 周末, 随时 ...) into
  weekly windows; `score_candidate` turns one expert's features into points and reasons;
  `first_hearing_slot` finds the first session time that suits the parties and the expert.
  These are plain functions of their arguments.
- `rank_candidates` computes the same points for the whole pool in ONE SQL statement (ranking
  10,000 experts in Python would cost more than the 20 ms budget), keeps the top ones and has
  `score_candidate` explain each. A test holds the SQL formula and `score_candidate` equal.

Conflicts of interest are exclusions, never penalties: the expert is a party; declared a conflict
with a party; lives in the same community as a party when it is a neighbour dispute; was already
invited to this case and declined, let it lapse, or is still being asked. Experts at their load
cap are left out as well.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext as _

from mediation_room.models import Case, Category, Status

# --- weights (integer points, so SQL and Python agree to the unit) -------------------------------

SPECIALTY_POINTS = 40
COMMUNITY_POINTS = 25
FREE_POINTS = 20
LANGUAGE_POINTS = 15
RATING_POINTS_PER_STAR = 4  # an average of 5 stars is worth 20 points
UNRATED_RATING_POINTS = 12  # a newcomer counts as three stars, neither helped nor hurt
LOAD_POINTS = 30  # a full load costs 30 points, in proportion below that
RECENT_POINTS = 8  # per assignment through the pool in the last RECENT_DAYS ...
RECENT_MAX = 4  # ... counting at most this many
RECENT_DAYS = 30

# Cases that keep a mediator busy.
ACTIVE_STATUSES = (Status.MATCHED, Status.SCHEDULED, Status.IN_SESSION)
# Invitations that rule an expert out of being asked (again) for the same case.
EXCLUDING_STATES = ("pending", "accepted", "declined", "lapsed")

DEFAULT_LIMIT = 20
INACTIVE_SLACK = 10

# --- preferred times -------------------------------------------------------------------------------

DAY_START = time(8, 0)
DAY_END = time(21, 30)

PARTS_OF_DAY: dict[str, tuple[time, time]] = {
    "上午": (time(8, 30), time(12, 0)),
    "早上": (time(8, 0), time(11, 0)),
    "中午": (time(11, 30), time(14, 0)),
    "下午": (time(13, 30), time(18, 0)),
    "傍晚": (time(17, 0), time(19, 0)),
    "晚上": (time(18, 0), time(21, 30)),
    "晚间": (time(18, 0), time(21, 30)),
    "白天": (time(8, 30), time(18, 0)),
    "全天": (DAY_START, DAY_END),
    "morning": (time(8, 30), time(12, 0)),
    "noon": (time(11, 30), time(14, 0)),
    "afternoon": (time(13, 30), time(18, 0)),
    "evening": (time(18, 0), time(21, 30)),
    "night": (time(18, 0), time(21, 30)),
}

WEEKDAYS = (0, 1, 2, 3, 4)
WEEKEND = (5, 6)
ALL_DAYS = (0, 1, 2, 3, 4, 5, 6)

DAY_WORDS: dict[str, tuple[int, ...]] = {
    "工作日": WEEKDAYS,
    "平时": WEEKDAYS,
    "周末": WEEKEND,
    "双休日": WEEKEND,
    "双休": WEEKEND,
    "weekdays": WEEKDAYS,
    "weekday": WEEKDAYS,
    "weekends": WEEKEND,
    "weekend": WEEKEND,
    "monday": (0,),
    "tuesday": (1,),
    "wednesday": (2,),
    "thursday": (3,),
    "friday": (4,),
    "saturday": (5,),
    "sunday": (6,),
}
DAY_NUMERALS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "七": 6}
ANYTIME_WORDS = ("随时", "都可以", "都行", "任何时间", "什么时候都", "不限", "any time", "anytime")

_SINGLE_DAY = re.compile(r"(?:周|星期|礼拜)([一二三四五六日天七])")
_DAY_RANGE = re.compile(
    r"(?:周|星期|礼拜)([一二三四五六日天七])\s*(?:到|至|~|－|-|—)\s*(?:周|星期|礼拜)?([一二三四五六日天七])"
)
_CLAUSE_SPLIT = re.compile(r"[，,、;；/|]|或者|或|和|及|以及|\bor\b|\band\b")


@dataclass(frozen=True, order=True)
class Window:
    """A weekly window: weekday (0 = Monday) and local start and end time."""

    weekday: int
    start: time
    end: time


@dataclass(frozen=True)
class PreferredTimes:
    windows: tuple[Window, ...]
    anytime: bool = False

    @property
    def understood(self) -> bool:
        return bool(self.windows)


def parse_preferred_times(text: str) -> PreferredTimes:
    """Weekly windows named by a short free-text answer. Unknown words are ignored; a text with no
    recognisable day or time gives no windows (the factor is then neutral for every expert)."""
    raw = (text or "").strip().lower()
    if not raw:
        return PreferredTimes(windows=())
    if any(word in raw for word in ANYTIME_WORDS):
        return PreferredTimes(
            windows=tuple(Window(d, DAY_START, DAY_END) for d in ALL_DAYS), anytime=True
        )
    windows: set[Window] = set()
    for clause in _CLAUSE_SPLIT.split(raw):
        days, parts = _clause_days_and_parts(clause)
        if not days and not parts:
            continue
        for day in days or ALL_DAYS:
            for start, end in parts or [(DAY_START, DAY_END)]:
                windows.add(Window(day, start, end))
    return PreferredTimes(windows=tuple(sorted(windows)))


def _clause_days_and_parts(clause: str) -> tuple[set[int], list[tuple[time, time]]]:
    days: set[int] = set()
    rest = clause
    for match in _DAY_RANGE.finditer(clause):
        first, last = DAY_NUMERALS[match.group(1)], DAY_NUMERALS[match.group(2)]
        days.update(range(first, last + 1) if first <= last else [])
        rest = rest.replace(match.group(0), " ")
    for match in _SINGLE_DAY.finditer(rest):
        days.add(DAY_NUMERALS[match.group(1)])
    for word, word_days in DAY_WORDS.items():
        if word in rest:
            days.update(word_days)
            rest = rest.replace(word, " ")
    parts = [span for word, span in PARTS_OF_DAY.items() if word in clause]
    return days, sorted(set(parts))


# One bit per weekday hour from 08:00 to 22:00: Monday to Thursday in the low word, Friday to
# Sunday in the high word (56 and 42 bits: both stay positive in a signed 64-bit column).
HOURS_FROM, HOURS_TO = 8, 22
_HOURS_PER_DAY = HOURS_TO - HOURS_FROM


def week_hours(windows: Iterable[Window]) -> tuple[int, int]:
    """The (low, high) hour bits touched by the windows. Coarse on purpose: an hour counts when
    any minute of it is inside a window; the exact minutes are used when a hearing is set."""
    lo = hi = 0
    for w in windows:
        start = w.start.hour * 60 + w.start.minute
        end = w.end.hour * 60 + w.end.minute
        for hour in range(HOURS_FROM, HOURS_TO):
            if start < (hour + 1) * 60 and end > hour * 60:
                bit = (w.weekday % 4) * _HOURS_PER_DAY + hour - HOURS_FROM
                if w.weekday < 4:
                    lo |= 1 << bit
                else:
                    hi |= 1 << bit
    return lo, hi


# --- scoring -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Features:
    """What the ranking knows about one expert for one case. `free`/`language` are None when the
    case gives nothing to compare with (no usable preferred time, no language asked for)."""

    specialty: bool
    serves_community: bool
    free: bool | None
    language: bool | None
    rating_sum: int
    rating_count: int
    load: int
    load_cap: int
    recent: int


@dataclass(frozen=True)
class Reason:
    code: str
    text: str
    points: int


def rating_points(rating_sum: int, rating_count: int) -> int:
    if rating_count <= 0:
        return UNRATED_RATING_POINTS
    return rating_sum * RATING_POINTS_PER_STAR // rating_count


def load_penalty(load: int, load_cap: int) -> int:
    return load * LOAD_POINTS // max(load_cap, 1)


def recent_penalty(recent: int) -> int:
    return min(recent, RECENT_MAX) * RECENT_POINTS


def score_candidate(f: Features) -> tuple[int, list[Reason]]:
    """Points and the human reasons behind them, for one expert and one case."""
    reasons: list[Reason] = []
    if f.specialty:
        reasons.append(
            Reason("specialty", _("Specialises in this kind of dispute"), SPECIALTY_POINTS)
        )
    else:
        reasons.append(Reason("specialty", _("Not a specialist in this kind of dispute"), 0))
    if f.serves_community:
        reasons.append(Reason("community", _("Serves this community"), COMMUNITY_POINTS))
    else:
        reasons.append(Reason("community", _("Does not usually serve this community"), 0))
    if f.free is None:
        reasons.append(Reason("free", _("The parties gave no time we could read"), 0))
    elif f.free:
        reasons.append(Reason("free", _("Free at a time the parties asked for"), FREE_POINTS))
    else:
        reasons.append(Reason("free", _("Not free at the times the parties asked for"), 0))
    if f.language is not None:
        if f.language:
            reasons.append(Reason("language", _("Speaks the language asked for"), LANGUAGE_POINTS))
        else:
            reasons.append(Reason("language", _("Does not speak the language asked for"), 0))
    stars = rating_points(f.rating_sum, f.rating_count)
    if f.rating_count:
        reasons.append(
            Reason(
                "rating",
                _("Rated %(avg).1f from %(n)d ratings")
                % {"avg": f.rating_sum / f.rating_count, "n": f.rating_count},
                stars,
            )
        )
    else:
        reasons.append(Reason("rating", _("Not rated yet"), stars))
    reasons.append(
        Reason(
            "load",
            _("%(load)d of %(cap)d cases at once") % {"load": f.load, "cap": f.load_cap},
            -load_penalty(f.load, f.load_cap),
        )
    )
    if f.recent:
        reasons.append(
            Reason(
                "recent",
                _("%(n)d case(s) through the pool in the last %(days)d days")
                % {"n": f.recent, "days": RECENT_DAYS},
                -recent_penalty(f.recent),
            )
        )
    points = (
        (SPECIALTY_POINTS if f.specialty else 0)
        + (COMMUNITY_POINTS if f.serves_community else 0)
        + (FREE_POINTS if f.free else 0)
        + (LANGUAGE_POINTS if f.language else 0)
        + stars
        - load_penalty(f.load, f.load_cap)
        - recent_penalty(f.recent)
    )
    return points, reasons


# --- the ranking query ------------------------------------------------------------------------------------


@dataclass
class Candidate:
    profile_id: int
    user_id: int
    public_id: str
    public_name: str
    kind: str
    score: int
    features: Features
    reasons: list[Reason] = field(default_factory=list)

    @property
    def rating_average(self) -> float | None:
        f = self.features
        return round(f.rating_sum / f.rating_count, 1) if f.rating_count else None


KNOWN_LANGUAGES = (
    "普通话",
    "杭州话",
    "临平话",
    "上海话",
    "温州话",
    "粤语",
    "闽南话",
    "英语",
    "手语",
)


def languages_mentioned(case: Case) -> list[str]:
    """Languages or dialects the case text asks for (e.g. "老人只会说杭州话"). 普通话 alone asks
    for nothing: every expert speaks it."""
    text = f"{case.description} {case.preferred_times}"
    return [lang for lang in KNOWN_LANGUAGES if lang in text and lang != "普通话"]


def rank_candidates(
    case: Case,
    *,
    languages: Sequence[str] | None = None,
    limit: int = DEFAULT_LIMIT,
    only_profile_ids: Iterable[int] | None = None,
    now: datetime | None = None,
) -> list[Candidate]:
    """The best `limit` eligible experts for the case, best first, each with reasons.

    One SQL query whatever the pool size. Ties are broken by lower load, fewer recent
    assignments, then the profile's id, so the same data always gives the same order.
    `languages=None` reads them from the case text; pass [] to ignore language."""
    from accounts.models import Membership, User
    from mediation_room.models import Party

    from .models import (
        AvailabilitySlot,
        DeclaredConflict,
        ExpertProfile,
        Invitation,
    )

    now = now or timezone.now()
    ops = connection.ops
    wanted_languages = list(languages_mentioned(case) if languages is None else languages)
    windows = parse_preferred_times(case.preferred_times).windows
    t = {
        "profile": ExpertProfile._meta.db_table,
        "served": ExpertProfile.communities.through._meta.db_table,
        "slot": AvailabilitySlot._meta.db_table,
        "conflict": DeclaredConflict._meta.db_table,
        "invitation": Invitation._meta.db_table,
        "user": User._meta.db_table,
        "membership": Membership._meta.db_table,
        "case": Case._meta.db_table,
        "party": Party._meta.db_table,
    }
    params: list = []

    # parties of this case
    params.append(case.pk)
    # current load: open cases, plus pending invitations elsewhere
    params.extend(str(s) for s in ACTIVE_STATUSES)
    # recent assignments through the pool
    params.append(ops.adapt_datetimefield_value(now - timedelta(days=RECENT_DAYS)))

    # Everyone ruled out, as one small set of profile ids found through indexes: a party (by
    # account or by number), a declared conflict, an earlier invitation to this case, and in a
    # neighbour dispute whoever lives in a party's community. One lookup per expert then.
    excluded = [
        f"SELECT id FROM {t['profile']} WHERE user_id IN"
        " (SELECT user_id FROM parties WHERE user_id IS NOT NULL)",
        f"""SELECT e.id FROM {t["profile"]} e JOIN {t["user"]} u ON u.id = e.user_id
            WHERE u.phone IN (SELECT phone FROM parties)""",
        f"""SELECT profile_id FROM {t["conflict"]}
            WHERE user_id IN (SELECT user_id FROM parties WHERE user_id IS NOT NULL)
               OR phone IN (SELECT phone FROM parties)""",
        f"SELECT expert_id FROM {t['invitation']} WHERE case_id = %s"
        f" AND state IN ({', '.join(['%s'] * len(EXCLUDING_STATES))})",
    ]
    params.append(case.pk)
    params.extend(EXCLUDING_STATES)
    if case.category == Category.NEIGHBOURS:
        # Two parts, so each can use the index on home_community_id.
        excluded.append(f"SELECT id FROM {t['profile']} WHERE home_community_id = %s")
        params.append(case.community_id)
        excluded.append(
            f"""SELECT id FROM {t["profile"]}
                WHERE home_community_id IN (SELECT community_id FROM {t["membership"]}
                    WHERE user_id IN (SELECT user_id FROM parties WHERE user_id IS NOT NULL))"""
        )

    specialty_sql = "CASE WHEN p.specialties LIKE %s THEN 1 ELSE 0 END"
    params.append(f"%,{case.category},%")
    serves_sql = (
        f"CASE WHEN p.id IN (SELECT expertprofile_id FROM {t['served']} WHERE community_id = %s)"
        " THEN 1 ELSE 0 END"
    )
    params.append(case.community_id)
    if windows:
        lo, hi = week_hours(windows)
        free_sql = (
            "CASE WHEN (p.week_hours_lo & %s) <> 0 OR (p.week_hours_hi & %s) <> 0 THEN 1 ELSE 0 END"
        )
        params.extend([lo, hi])
    else:
        free_sql = "0"
    if wanted_languages:
        language_sql = (
            "CASE WHEN "
            + " OR ".join(["p.languages LIKE %s"] * len(wanted_languages))
            + " THEN 1 ELSE 0 END"
        )
        params.extend(f"%,{lang},%" for lang in wanted_languages)
    else:
        language_sql = "0"

    where = ["p.active", "p.id NOT IN (SELECT id FROM excluded)"]
    if only_profile_ids is not None:
        ids = [int(i) for i in only_profile_ids]
        if not ids:
            return []
        where.append(f"p.id IN ({', '.join(['%s'] * len(ids))})")
        params.extend(ids)
    # Switched-off accounts are dropped after the ranking (checking every expert's account would
    # cost a scan of all users); a few spare rows cover them.
    params.extend([int(limit) + INACTIVE_SLACK, int(limit)])

    # Table names come from model metadata and every value is a bound parameter.
    sql = f"""
    WITH parties AS (SELECT user_id, phone FROM {t["party"]} WHERE case_id = %s),
    open_cases AS (
        SELECT expert_id AS user_id, COUNT(*) AS n FROM {t["case"]}
        WHERE expert_id IS NOT NULL AND status IN (%s, %s, %s) GROUP BY expert_id),
    asked AS (
        SELECT expert_id AS profile_id,
            SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END) AS pending,
            SUM(CASE WHEN state = 'accepted' THEN 1 ELSE 0 END) AS recent
        FROM {t["invitation"]}
        WHERE state = 'pending' OR (state = 'accepted' AND responded_at >= %s)
        GROUP BY expert_id),
    excluded AS ({" UNION ".join(excluded)}),
    -- Narrow rows (numbers only) for the whole pool; names are fetched for the top few.
    features AS (
        SELECT p.id, p.load_cap, p.rating_sum, p.rating_count,
            {specialty_sql} AS specialty,
            {serves_sql} AS serves,
            {free_sql} AS free,
            {language_sql} AS language,
            COALESCE(oc.n, 0) + COALESCE(a.pending, 0) AS load,
            COALESCE(a.recent, 0) AS recent
        FROM {t["profile"]} p
        LEFT JOIN open_cases oc ON oc.user_id = p.user_id
        LEFT JOIN asked a ON a.profile_id = p.id
        WHERE {" AND ".join(where)}
    ),
    scored AS (
        SELECT f.*,
            specialty * {SPECIALTY_POINTS} + serves * {COMMUNITY_POINTS} + free * {FREE_POINTS}
            + language * {LANGUAGE_POINTS}
            + CASE WHEN rating_count > 0 THEN rating_sum * {RATING_POINTS_PER_STAR} / rating_count
                   ELSE {UNRATED_RATING_POINTS} END
            - load * {LOAD_POINTS} / load_cap
            - CASE WHEN recent > {RECENT_MAX} THEN {RECENT_MAX} ELSE recent END * {RECENT_POINTS}
            AS score
        FROM features f WHERE load < load_cap
    )
    SELECT s.id, pr.user_id, pr.public_id, pr.public_name, pr.kind, s.load_cap, s.rating_sum,
           s.rating_count, s.specialty, s.serves, s.free, s.language, s.load, s.recent, s.score
    FROM (SELECT * FROM scored ORDER BY score DESC, load ASC, recent ASC, id ASC LIMIT %s) s
    JOIN {t["profile"]} pr ON pr.id = s.id
    JOIN {t["user"]} u ON u.id = pr.user_id AND u.is_active
    ORDER BY s.score DESC, s.load ASC, s.recent ASC, s.id ASC LIMIT %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()

    out: list[Candidate] = []
    for row in rows:
        (
            pid,
            uid,
            public_id,
            name,
            kind,
            cap,
            r_sum,
            r_count,
            spec,
            serves,
            free,
            lang,
            load,
            recent,
            score,
        ) = row
        features = Features(
            specialty=bool(spec),
            serves_community=bool(serves),
            free=bool(free) if windows else None,
            language=bool(lang) if wanted_languages else None,
            rating_sum=r_sum,
            rating_count=r_count,
            load=load,
            load_cap=cap,
            recent=recent,
        )
        points, reasons = score_candidate(features)
        out.append(
            Candidate(
                profile_id=pid,
                user_id=uid,
                public_id=public_id,
                public_name=name,
                kind=kind,
                score=int(score),
                features=features,
                reasons=reasons,
            )
        )
    return out


# --- when to meet --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatedException:
    date: date
    available: bool
    start: time | None = None
    end: time | None = None


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _subtract(spans: list[tuple[int, int]], cut: tuple[int, int]) -> list[tuple[int, int]]:
    out = []
    for a, b in spans:
        if cut[1] <= a or cut[0] >= b:
            out.append((a, b))
            continue
        if a < cut[0]:
            out.append((a, cut[0]))
        if cut[1] < b:
            out.append((cut[1], b))
    return out


def _intersect(xs: list[tuple[int, int]], ys: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for a, b in xs:
        for c, d in ys:
            lo, hi = max(a, c), min(b, d)
            if lo < hi:
                out.append((lo, hi))
    return sorted(out)


def expert_spans_on(
    day: date, slots: Sequence[Window], exceptions: Sequence[DatedException]
) -> list[tuple[int, int]]:
    """The expert's free minutes-of-day on one date: weekly slots, minus away-exceptions, plus
    extra windows."""
    spans = [(_minutes(s.start), _minutes(s.end)) for s in slots if s.weekday == day.weekday()]
    for exc in exceptions:
        if exc.date != day:
            continue
        if exc.available and exc.start and exc.end:
            spans.append((_minutes(exc.start), _minutes(exc.end)))
        elif not exc.available:
            spans = (
                []
                if exc.start is None or exc.end is None
                else _subtract(spans, (_minutes(exc.start), _minutes(exc.end)))
            )
    return sorted(spans)


def first_hearing_slot(
    *,
    now: datetime,
    tz: tzinfo,
    party_windows: Sequence[Window],
    expert_slots: Sequence[Window],
    exceptions: Sequence[DatedException] = (),
    busy: Sequence[tuple[datetime, datetime]] = (),
    duration: timedelta = timedelta(hours=1),
    lead: timedelta = timedelta(hours=12),
    horizon_days: int = 14,
    step_minutes: int = 30,
) -> tuple[datetime, datetime, str] | None:
    """The earliest session (start, end, fit) at least `lead` from now within the horizon.

    fit is "both" (suits the parties and the expert), else "expert" (the expert's time, the parties
    gave none that fits), else "parties" (the expert has no free time in the horizon). None when
    neither side offers any time."""
    earliest = now + lead
    need = int(duration.total_seconds() // 60)
    first_day = timezone.localtime(now, tz).date()

    def search(pick) -> tuple[datetime, datetime] | None:
        for offset in range(horizon_days + 1):
            day = first_day + timedelta(days=offset)
            for lo, hi in pick(day):
                minute = lo
                while minute + need <= hi:
                    start = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=tz)
                    end = start + duration
                    if start >= earliest and not any(s < end and start < e for s, e in busy):
                        return start, end
                    minute += step_minutes
        return None

    def parties(day: date) -> list[tuple[int, int]]:
        return sorted(
            (_minutes(w.start), _minutes(w.end))
            for w in party_windows
            if w.weekday == day.weekday()
        )

    def expert(day: date) -> list[tuple[int, int]]:
        return expert_spans_on(day, expert_slots, exceptions)

    if party_windows:
        found = search(lambda d: _intersect(parties(d), expert(d)))
        if found:
            return (*found, "both")
    found = search(expert)
    if found:
        return (*found, "expert")
    if party_windows:
        found = search(parties)
        if found:
            return (*found, "parties")
    return None
