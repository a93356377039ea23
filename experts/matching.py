# The ranking SQL is assembled from table names taken from model metadata and fixed fragments;
# every value is a bound parameter.
# ruff: noqa: S608
"""Who should mediate this case: the ranking of the expert pool, with its reasons.

Three layers, from pure to database:
- `parse_preferred_times` turns the parties' free text (工作日晚上, 周六上午, 周末, 随时 ...) into
  weekly windows; `score_candidate` turns one expert's features into points and reasons;
  `first_hearing_slot` finds the first session time that suits the parties and the expert.
  These are plain functions of their arguments.
- `rank_candidates` computes the same points in ONE SQL statement (ranking 10,000 experts in
  Python would cost more than the 20 ms budget), keeps the top ones and has `score_candidate`
  explain each. A test holds the SQL formula and `score_candidate` equal. The statement scores
  the pool tier by tier and skips whoever can no longer reach the list, so a large pool costs
  little more than a small one; a test holds its answer equal to scoring everyone.

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


# The pool is scored in tiers, most promising first: the specialists who serve the community and
# have every other bonus the case offers (free at the parties' times, the language asked for);
# the other specialists who serve it; the other specialists; everyone else. A tier is only scored
# where its experts can still reach the list (see `_ranking_sql`).
TIERS = ("best specialists", "local specialists", "other specialists", "non-specialists")
BEST_RATING_POINTS = max(5 * RATING_POINTS_PER_STAR, UNRATED_RATING_POINTS)
_BELOW_ANY_SCORE = -1_000_000


def in_tier(
    tier: str, *, specialty: bool, serves: bool, free: bool, language: bool, offers: tuple
) -> bool:
    """Whether an expert with these bonuses belongs to the tier. `offers` is (free, language): the
    factors the case offers at all."""
    best = specialty and serves and (free or not offers[0]) and (language or not offers[1])
    if tier == "best specialists":
        return best
    if tier == "local specialists":
        return specialty and serves and not best
    if tier == "other specialists":
        return specialty and not serves
    return not specialty


def best_possible_score(tier: str, *, offers: tuple[bool, bool]) -> int | None:
    """The most an expert of the tier can score: the best of its bonuses, the best rating, no load
    and no recent assignment (the penalties are never negative). None: the tier is empty."""
    bests = [
        SPECIALTY_POINTS * specialty
        + COMMUNITY_POINTS * serves
        + FREE_POINTS * free
        + LANGUAGE_POINTS * language
        + BEST_RATING_POINTS
        for specialty in (True, False)
        for serves in (True, False)
        for free in (True, False)[not offers[0] :]
        for language in (True, False)[not offers[1] :]
        if in_tier(
            tier, specialty=specialty, serves=serves, free=free, language=language, offers=offers
        )
    ]
    return max(bests, default=None)


def _ranking_sql(
    case: Case,
    *,
    windows: Sequence[Window],
    languages: Sequence[str],
    limit: int,
    only: list[int] | None,
    now: datetime,
) -> tuple[str, dict]:
    """The ranking as one SQL statement, and its parameters.

    Scoring every expert of a large pool (three index lookups each for the load and the recent
    assignments) costs more than the time budget, and almost all of them are far from the top.
    So the pool is scored tier by tier (TIERS; the specialists come from the partial index of
    their category). After each tier, `cut` is the score of the `keep`-th best eligible expert
    scored so far, or below any score when there are fewer. The true `keep`-th best score can
    only be higher, and penalties only lower a score, so:
    - a later tier whose best possible score is below `cut` holds nobody of the list and is
      skipped (the condition does not depend on the rows, so PostgreSQL does not read them);
    - in a tier that is read, an expert whose bonuses and rating alone are below `cut` is not
      scored.
    Equal to `cut` is kept, since it may still win a tie. The answer is therefore the one scoring
    the whole pool gives; tests compare the two on random pools and on such a tie."""
    from accounts.models import Membership, User
    from mediation_room.models import Party

    from .models import DeclaredConflict, ExpertProfile, Invitation

    t = {
        "profile": ExpertProfile._meta.db_table,
        "served": ExpertProfile.communities.through._meta.db_table,
        "conflict": DeclaredConflict._meta.db_table,
        "invitation": Invitation._meta.db_table,
        "user": User._meta.db_table,
        "membership": Membership._meta.db_table,
        "case": Case._meta.db_table,
        "party": Party._meta.db_table,
    }
    keep = limit + INACTIVE_SLACK  # switched-off accounts are dropped after the ranking
    params: dict[str, object] = {
        "case": case.pk,
        "community": case.community_id,
        "since": connection.ops.adapt_datetimefield_value(now - timedelta(days=RECENT_DAYS)),
        # The same LIKE Django writes for `specialties__contains`: the partial indexes of
        # ExpertProfile.Meta are written that way, so PostgreSQL can use them.
        "specialty": f"%{connection.ops.prep_for_like_query(f',{case.category},')}%",
        "keep": keep,
        "skip": keep - 1,
        "limit": limit,
    }

    def bind(name: str, values: Iterable) -> str:
        names = []
        for i, value in enumerate(values):
            params[f"{name}{i}"] = value
            names.append(f"%({name}{i})s")
        return ", ".join(names)

    active_statuses = bind("status", (str(s) for s in ACTIVE_STATUSES))
    excluding_states = bind("state", EXCLUDING_STATES)
    is_specialist = f"p.specialties {connection.operators['contains'] % '%(specialty)s'}"

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
        f"SELECT expert_id FROM {t['invitation']} WHERE case_id = %(case)s"
        f" AND state IN ({excluding_states})",
    ]
    if case.category == Category.NEIGHBOURS:
        # Two parts, so each can use the index on home_community_id.
        excluded.append(f"SELECT id FROM {t['profile']} WHERE home_community_id = %(community)s")
        excluded.append(
            f"""SELECT id FROM {t["profile"]}
                WHERE home_community_id IN (SELECT community_id FROM {t["membership"]}
                    WHERE user_id IN (SELECT user_id FROM parties WHERE user_id IS NOT NULL))"""
        )

    if windows:
        params["hours_lo"], params["hours_hi"] = week_hours(windows)
        free_sql = (
            "CASE WHEN (p.week_hours_lo & %(hours_lo)s) <> 0"
            " OR (p.week_hours_hi & %(hours_hi)s) <> 0 THEN 1 ELSE 0 END"
        )
    else:
        free_sql = "0"
    if languages:
        language_sql = (
            "CASE WHEN "
            + " OR ".join(f"p.languages LIKE %(language{i})s" for i in range(len(languages)))
            + " THEN 1 ELSE 0 END"
        )
        params.update({f"language{i}": f"%,{lang},%" for i, lang in enumerate(languages)})
    else:
        language_sql = "0"
    only_sql = f" AND p.id IN ({bind('only', only)})" if only is not None else ""
    rating_sql = (
        f"CASE WHEN p.rating_count > 0 THEN p.rating_sum * {RATING_POINTS_PER_STAR} / p.rating_count"
        f" ELSE {UNRATED_RATING_POINTS} END"
    )

    offers = (bool(windows), bool(languages))
    serves_sql = "(p.id IN (SELECT id FROM served))"
    best_sql = " AND ".join(
        [serves_sql] + [f"({free_sql}) = 1"] * offers[0] + [f"({language_sql}) = 1"] * offers[1]
    )
    # "IS TRUE/FALSE" below keeps each IN a hashed lookup: PostgreSQL would otherwise plan joins
    # from row estimates, which a skewed pool can make very wrong.
    membership = {
        "best specialists": f"({is_specialist}) AND ({best_sql}) IS TRUE",
        "local specialists": f"({is_specialist}) AND {serves_sql} IS TRUE"
        f" AND ({best_sql}) IS FALSE",
        "other specialists": f"({is_specialist}) AND {serves_sql} IS FALSE",
        "non-specialists": f"({is_specialist}) IS FALSE",
    }

    def tier(n: int, name: str) -> str:
        """Tier n: its experts (not ruled out) with what scoring needs, each lookup made once;
        then the eligible ones (below their cap) scored."""
        specialty = int(name != "non-specialists")
        serves = {"best specialists": "1", "local specialists": "1", "other specialists": "0"}.get(
            name, f"CASE WHEN {serves_sql} THEN 1 ELSE 0 END"
        )
        where = ["p.active", membership[name], "p.id NOT IN (SELECT id FROM excluded)"]
        if n:
            best = best_possible_score(name, offers=offers)
            # The whole tier is skipped when its best cannot reach the list, and each expert
            # whose bonuses and rating (before any penalty) cannot reach it is left unscored.
            where.append(f"(SELECT v FROM cut{n}) <= {best}")
            where.append(
                f"{SPECIALTY_POINTS * specialty} + ({serves}) * {COMMUNITY_POINTS}"
                f" + ({free_sql}) * {FREE_POINTS} + ({language_sql}) * {LANGUAGE_POINTS}"
                f" + {rating_sql} >= (SELECT v FROM cut{n})"
            )
        return f"""
        tier{n} AS MATERIALIZED (
            SELECT p.id, p.load_cap, p.rating_sum, p.rating_count,
                {specialty} AS specialty, {serves} AS serves,
                {free_sql} AS free, {language_sql} AS language,
                (SELECT COUNT(*) FROM {t["case"]} c
                    WHERE c.expert_id = p.user_id AND c.status IN ({active_statuses}))
                + (SELECT COUNT(*) FROM {t["invitation"]} i
                    WHERE i.expert_id = p.id AND i.state = 'pending') AS load,
                (SELECT COUNT(*) FROM {t["invitation"]} i
                    WHERE i.expert_id = p.id AND i.state = 'accepted'
                        AND i.responded_at >= %(since)s) AS recent
            FROM {t["profile"]} p
            WHERE {" AND ".join(where)}{only_sql}),
        scored{n} AS (
            SELECT t.*,
                specialty * {SPECIALTY_POINTS} + serves * {COMMUNITY_POINTS}
                + free * {FREE_POINTS} + language * {LANGUAGE_POINTS}
                + CASE WHEN rating_count > 0
                       THEN rating_sum * {RATING_POINTS_PER_STAR} / rating_count
                       ELSE {UNRATED_RATING_POINTS} END
                - load * {LOAD_POINTS} / load_cap
                - CASE WHEN recent > {RECENT_MAX} THEN {RECENT_MAX} ELSE recent END
                  * {RECENT_POINTS} AS score
            FROM tier{n} t WHERE load < load_cap)"""

    tiers = [name for name in TIERS if best_possible_score(name, offers=offers) is not None]
    ctes = []
    for n, each in enumerate(tiers):
        if n:
            # The keep-th best score so far, or below any score.
            so_far = " UNION ALL ".join(f"SELECT score FROM scored{i}" for i in range(n))
            ctes.append(
                f"""cut{n} AS (SELECT COALESCE((SELECT score FROM ({so_far}) s
                    ORDER BY score DESC LIMIT 1 OFFSET %(skip)s), {_BELOW_ANY_SCORE}) AS v)"""
            )
        ctes.append(tier(n, each))
    everyone = " UNION ALL ".join(f"SELECT * FROM scored{n}" for n in range(len(tiers)))

    # Table names come from model metadata and every value is a bound parameter.
    sql = f"""
    WITH parties AS (SELECT user_id, phone FROM {t["party"]} WHERE case_id = %(case)s),
    served AS (SELECT expertprofile_id AS id FROM {t["served"]} WHERE community_id = %(community)s),
    excluded AS ({" UNION ".join(excluded)}),
    {", ".join(ctes)}
    SELECT s.id, pr.user_id, pr.public_id, pr.public_name, pr.kind, s.load_cap, s.rating_sum,
           s.rating_count, s.specialty, s.serves, s.free, s.language, s.load, s.recent, s.score
    FROM (SELECT * FROM ({everyone}) scored
          ORDER BY score DESC, load ASC, recent ASC, id ASC LIMIT %(keep)s) s
    JOIN {t["profile"]} pr ON pr.id = s.id
    JOIN {t["user"]} u ON u.id = pr.user_id AND u.is_active
    ORDER BY s.score DESC, s.load ASC, s.recent ASC, s.id ASC LIMIT %(limit)s
    """
    return sql, params


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
    now = now or timezone.now()
    wanted_languages = list(languages_mentioned(case) if languages is None else languages)
    windows = parse_preferred_times(case.preferred_times).windows
    only = None
    if only_profile_ids is not None:
        only = [int(i) for i in only_profile_ids]
        if not only:
            return []
    sql, params = _ranking_sql(
        case, windows=windows, languages=wanted_languages, limit=int(limit), only=only, now=now
    )
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
