"""Plans and reminders found in what a user writes, conservatively: a follow-up on a misread date is
worse than none. Pure: no I/O, the clock and the user's zone are arguments.

A *reminder* is a clear request ("remind me tomorrow at 9 to call mom", "erinnere mich in 10
Minuten daran, Wasser zu trinken") with a time we can name. A *plan* is a sentence with an event
word (interview, exam, flight, wedding, ...) and a date phrase ("on Thursday at 10", "tomorrow",
"am 14."), in the future, not hedged ("I may go", "vielleicht"), not past ("I had an exam
yesterday"), not a question, not negated. Date phrases are read by a kept parser (dateparser) in
the user's language, relative to their local now; the time of day by the patterns here.
English and German.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

import dateparser

Kind = Literal["plan", "reminder"]
DATE_ONLY_AT = time(12, 0)  # a plan with a date and no time is taken to be around midday


@dataclass(frozen=True, slots=True)
class Found:
    kind: Kind
    what: str  # what to remind of, or the sentence that names the plan
    at: datetime  # in the user's zone
    has_time: bool  # the user named a time of day


@dataclass(frozen=True, slots=True)
class _Grammar:
    language: str
    reminder: re.Pattern[str]
    event: re.Pattern[str]
    date: re.Pattern[str]
    time: re.Pattern[str]
    relative: re.Pattern[str]  # "in 10 minutes"
    unit: dict[str, str]  # the relative pattern's unit words -> minutes/hours/days
    hedge: re.Pattern[str]
    past: re.Pattern[str]
    negation: re.Pattern[str]
    strip: re.Pattern[str]  # prepositions dateparser does not read
    reminder_what: re.Pattern[str]


_EN_WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_EN_MONTH = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december|"
    r"jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)"
)
_DE_WEEKDAY = r"(?:montag|dienstag|mittwoch|donnerstag|freitag|samstag|sonntag)"
_DE_MONTH = r"(?:januar|februar|märz|april|mai|juni|juli|august|september|oktober|november|dezember)"

ENGLISH = _Grammar(
    language="en",
    reminder=re.compile(r"\b(?:remind me|set a reminder|don'?t let me forget)\b", re.I),
    event=re.compile(
        r"\b(?:interview|exam|exams|test|finals|flight|fly|flying|wedding|appointment|dentist|doctor|surgery|"
        r"operation|presentation|meeting|deadline|date|concert|match|game|trip|party|birthday|audition|"
        r"recital|defen[cs]e|hearing|move|moving|marathon|race|gig|funeral|graduation|ceremony|check-?up|"
        r"visa|driving test|job|first day|shift|dinner|review|appraisal)\b",
        re.I,
    ),
    date=re.compile(
        rf"\b(?:the day after tomorrow|tomorrow|tonight|today|this (?:morning|afternoon|evening)|"
        rf"(?:on |this |next |coming )?{_EN_WEEKDAY}|on the \d{{1,2}}(?:st|nd|rd|th)|"
        rf"on {_EN_MONTH} \d{{1,2}}(?:st|nd|rd|th)?|on the \d{{1,2}}(?:st|nd|rd|th)? of {_EN_MONTH}|"
        rf"on \d{{1,2}}(?:st|nd|rd|th)? {_EN_MONTH}|in \d{{1,2}} days|next week)\b",
        re.I,
    ),
    time=re.compile(
        r"\b(?:at |by |around )?(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<half>am|pm|a\.m\.|p\.m\.)"
        r"|\b(?:at|by|around) (?P<hour2>\d{1,2})(?::(?P<minute2>\d{2}))?\b(?!\s*(?:days|minutes|hours|%))"
        r"|\b(?P<noon>noon|midday)\b",
        re.I,
    ),
    relative=re.compile(r"\bin (?P<n>\d{1,3}|an?|one|half an) (?P<unit>minutes?|mins?|hours?|days?)\b", re.I),
    unit={"min": "minutes", "hou": "hours", "day": "days"},
    hedge=re.compile(
        r"\b(?:may|might|maybe|perhaps|possibly|probably|not sure|if|whether|thinking (?:about|of)|"
        r"considering|would like|hope to|hoping to|could|should i|planning to maybe)\b",
        re.I,
    ),
    past=re.compile(
        r"\b(?:yesterday|last (?:week|night|month|year|" + _EN_WEEKDAY + r")|ago|was|were|had|went|did|"
        r"passed|failed|finished|got back|came back)\b",
        re.I,
    ),
    negation=re.compile(r"\b(?:no|not|never|cancel+ed|postponed|called off|isn'?t|aren'?t|won'?t|don'?t have)\b", re.I),
    strip=re.compile(r"^(?:on|this)\s+", re.I),
    reminder_what=re.compile(r"\b(?:to|about|that)\s+(?P<what>.+)$", re.I),
)

GERMAN = _Grammar(
    language="de",
    reminder=re.compile(r"\b(?:erinnere? mich|erinnerst du mich|erinnerung)\b", re.I),
    event=re.compile(
        r"(?:vorstellungsgespräch|bewerbungsgespräch|prüfung|klausur|examen|test|flug|fliege|hochzeit|termin|"
        r"arzttermin|zahnarzt|arzt|operation|präsentation|vortrag|meeting|besprechung|deadline|abgabe|date|"
        r"konzert|spiel|reise|party|feier|geburtstag|vorsingen|umzug|ziehe|marathon|lauf|beerdigung|"
        r"abschlussfeier|führerscheinprüfung|erster arbeitstag|schicht|abendessen)",
        re.I,
    ),
    date=re.compile(
        rf"\b(?:übermorgen|morgen(?! früh)|morgen früh|heute abend|heute|"
        rf"(?:am |diesen |nächsten |kommenden )?{_DE_WEEKDAY}|am \d{{1,2}}\.(?: {_DE_MONTH})?|"
        rf"in \d{{1,2}} tagen|nächste woche)",
        re.I,
    ),
    time=re.compile(
        r"\bum (?P<hour2>\d{1,2})(?:[:.](?P<minute2>\d{2}))?(?: uhr)?\b"
        r"|\b(?P<hour>\d{1,2})(?:[:.](?P<minute>\d{2}))? uhr\b"
        r"|\b(?P<noon>mittags)\b",
        re.I,
    ),
    relative=re.compile(r"\bin (?P<n>\d{1,3}|einer|einem|einer halben) (?P<unit>minuten?|stunden?|tag(?:en)?)\b", re.I),
    unit={"min": "minutes", "stu": "hours", "tag": "days"},
    hedge=re.compile(
        r"\b(?:vielleicht|eventuell|möglicherweise|wahrscheinlich|falls|wenn|ob|überlege|würde gern|hoffe)\b", re.I
    ),
    past=re.compile(
        r"\b(?:gestern|vorgestern|letzte[nmrs]? (?:woche|monat|jahr|" + _DE_WEEKDAY + r")|letztes jahr|vor \d+|"
        r"war|waren|hatte|hatten|gewesen|geklappt|lief|ging|gefallen|bestanden|geschafft)\b",
        re.I,
    ),
    negation=re.compile(r"\b(?:kein|keine|keinen|nicht|nie|abgesagt|verschoben|fällt aus)\b", re.I),
    strip=re.compile(r"^(?:am|diesen)\s+", re.I),
    reminder_what=re.compile(r"(?:\b(?:daran,?|an|dass)\s+|,\s*)(?P<what>.+)$", re.I),
)

GRAMMARS = {"en": ENGLISH, "de": GERMAN}
_SENTENCES = re.compile(r"(?<=[.!?;])\s+|\n+")
_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "einer": 1, "einem": 1}


def find(text: str, *, now: datetime, zone: ZoneInfo, language: str | None = None) -> Found | None:
    """The reminder or plan in `text`, or None. `language`: the user's (Telegram's language_code);
    German is read in German, everything else in English."""
    grammar = GRAMMARS["de"] if (language or "").lower().startswith("de") else ENGLISH
    local_now = now.astimezone(zone)
    for sentence in (s.strip() for s in _SENTENCES.split(text) if s.strip()):
        found = _reminder(sentence, grammar, local_now) or _plan(sentence, grammar, local_now)
        if found is not None:
            return found
    return None


def _reminder(sentence: str, grammar: _Grammar, now: datetime) -> Found | None:
    request = grammar.reminder.search(sentence)
    if request is None:
        return None
    rest = sentence[request.end() :]
    at = _relative(rest, grammar, now) or _dated(rest, grammar, now, need_time=True)
    if at is None:
        return None
    what = grammar.reminder_what.search(_without_when(rest, grammar))
    if what is None:
        return None
    text = what.group("what").strip(" .!,")
    return Found("reminder", text, at, True) if text else None


def _plan(sentence: str, grammar: _Grammar, now: datetime) -> Found | None:
    if sentence.endswith("?") or grammar.event.search(sentence) is None:
        return None
    if grammar.hedge.search(sentence) or grammar.past.search(sentence) or grammar.negation.search(sentence):
        return None
    at = _dated(sentence, grammar, now, need_time=False)
    if at is None:
        return None
    return Found("plan", sentence.strip()[:200], at, _time_of(sentence, grammar) is not None)


def _relative(text: str, grammar: _Grammar, now: datetime) -> datetime | None:
    match = grammar.relative.search(text)
    if match is None:
        return None
    amount = match.group("n").lower()
    count = 0.5 if "half" in amount or "halben" in amount else _NUMBER_WORDS.get(amount) or int(amount)
    unit = grammar.unit[match.group("unit").lower()[:3]]
    if count <= 0:
        return None
    if unit == "days":  # "in 3 days": the same wall-clock time, whatever the clocks do meanwhile
        return (now + timedelta(days=count)).replace(second=0, microsecond=0)
    elapsed = now.astimezone(UTC) + timedelta(**{unit: count})  # minutes and hours pass for real
    return elapsed.astimezone(now.tzinfo).replace(microsecond=0)


def _dated(text: str, grammar: _Grammar, now: datetime, *, need_time: bool) -> datetime | None:
    """The date phrase (read by dateparser) at the named time of day; future only."""
    phrase = grammar.date.search(text)
    clock = _time_of(text, grammar)
    if phrase is None:
        if clock is None:  # no date, no time
            return None
        today = now.date()  # "at 17:00": today, or tomorrow if that has passed
        at = datetime.combine(today, clock, now.tzinfo)
        return at if at > now else datetime.combine(today + timedelta(days=1), clock, now.tzinfo)
    if need_time and clock is None and not re.search(r"tonight|heute abend|morgen früh", phrase.group(0), re.I):
        return None
    day = _parse_day(phrase.group(0), grammar, now)
    if day is None:
        return None
    clock = clock or _evening_or_noon(phrase.group(0))
    at = datetime.combine(day, clock, now.tzinfo)
    return at if (at > now if need_time or _time_of(text, grammar) else day >= now.date()) else None


def _evening_or_noon(phrase: str) -> time:
    lowered = phrase.lower()
    if "tonight" in lowered or "evening" in lowered or "abend" in lowered:
        return time(19, 0)
    if "morning" in lowered or "früh" in lowered:
        return time(9, 0)
    return DATE_ONLY_AT


def _parse_day(phrase: str, grammar: _Grammar, now: datetime) -> date | None:
    cleaned = grammar.strip.sub("", phrase.strip()).lower()
    cleaned = re.sub(r"\b(?:morning|afternoon|evening|abend|früh)\b", "", cleaned).strip()
    cleaned = {"tonight": "today", "this": "today"}.get(cleaned, cleaned) or "today"
    if cleaned.startswith("am "):
        cleaned = cleaned[3:]
    if re.fullmatch(r"\d{1,2}\.", cleaned):  # "am 14.": this month's, or next month's if it has passed
        cleaned = f"{cleaned} {_month_name(now, int(cleaned[:-1]), grammar)}"
    if re.fullmatch(r"the \d{1,2}(?:st|nd|rd|th)", cleaned):
        cleaned = cleaned[4:]
    following = re.match(rf"^(?:next|nächsten|kommenden) ({_EN_WEEKDAY}|{_DE_WEEKDAY})$", cleaned)
    if following is not None:  # "next Tuesday": the Tuesday of next week
        cleaned = following.group(1)
        now = now + timedelta(days=7 - now.weekday() - 1)  # from the Sunday that ends this week
    parsed = _parser(cleaned, grammar.language, now.replace(tzinfo=None, second=0, microsecond=0))
    return parsed.date() if parsed is not None else None


def _month_name(now: datetime, day: int, grammar: _Grammar) -> str:
    names = _DE_MONTH.strip("(?:)").split("|") if grammar.language == "de" else []
    month = now.month if day >= now.day else now.month % 12 + 1
    return names[month - 1] if names else str(month)


@lru_cache(maxsize=1024)  # the same phrase within the same minute: parsed once
def _parser(phrase: str, language: str, base: datetime) -> datetime | None:
    settings = {"PREFER_DATES_FROM": "future", "RELATIVE_BASE": base, "RETURN_AS_TIMEZONE_AWARE": False}
    parsed: datetime | None = dateparser.parse(phrase, languages=[language], settings=settings)
    return parsed


def _time_of(text: str, grammar: _Grammar) -> time | None:
    match = grammar.time.search(text)
    if match is None:
        return None
    if match.group("noon"):
        return time(12, 0)
    hour_text = match.group("hour") or match.group("hour2")
    minute_text = match.group("minute") or match.group("minute2")
    hour, minute = int(hour_text), int(minute_text or 0)
    half = (match.groupdict().get("half") or "").lower().replace(".", "")
    if half == "pm" and hour < 12:
        hour += 12
    elif half == "am" and hour == 12:
        hour = 0
    elif not half and 1 <= hour <= 6 and not hour_text.startswith("0") and grammar.language == "en":
        # "at 3" is the afternoon; "at 03:30" is written on a 24-hour clock
        hour += 12
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def _without_when(text: str, grammar: _Grammar) -> str:
    """The request without its time words, so "to call mom" is what remains to remind of."""
    for pattern in (grammar.relative, grammar.date, grammar.time):
        text = pattern.sub(" ", text)
    return " ".join(text.split())
