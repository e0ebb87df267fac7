"""The rules a new static password must meet: length, not a known-breached password, and
hard enough to guess according to zxcvbn.

``check_new_password`` raises ``InvalidRequest`` with one of these stable codes:

- ``password_too_short`` / ``password_too_long``: fewer than ``MIN_LENGTH`` or more than
  ``MAX_LENGTH`` characters, counted as code points after NFKC normalisation
  (``normalise_password``), so a full-width letter counts as its ASCII form;
- ``password_too_common``: the password, ignoring case, or the same password with leetspeak
  undone ("p@ssw0rd") or with up to four digits and one symbol appended ("Dragon2024!"), is
  on zxcvbn's list of the 30,000 most common breached passwords;
- ``password_too_weak``: zxcvbn scores it below ``MIN_SCORE``. ``context`` carries what the
  caller knows about the person (phone number, name, e-mail): what is left once those are
  taken out is scored, and zxcvbn also treats them as the first words an attacker tries.
  The error's extra members are ``score``, ``min_score`` and ``suggestions``.

No error detail or extra member contains the password.

zxcvbn is imported on first use, so importing this module stays cheap. Its run time grows
with the square of the length and with the variety of leetspeak characters it must try to
undo, so only a bounded prefix is analysed (``_analysed_prefix``); the worst case found is
about 0.1 s of CPU. An async caller runs ``check_new_password`` in a worker thread, like
password hashing.
"""

from __future__ import annotations

import re
import string
import threading
import unicodedata
from collections.abc import Sequence
from functools import cache, lru_cache
from math import isqrt
from typing import Any, NoReturn

from anfu.errors import InvalidRequest

MIN_LENGTH = 8
MAX_LENGTH = 128
# zxcvbn's "safely unguessable": at least 10^8 estimated guesses, which also gives moderate
# protection if the Argon2id hashes ever leak. zxcvbn never rates an n-character password
# above 10^n guesses, so in practice this asks for 9 characters or more.
MIN_SCORE = 3

# Beyond 64 characters zxcvbn's score is already 4 (its maximum) for anything that is not
# dominated by a repeated run ("aaaa…", "abcabc…"): each word, pattern or random stretch it
# finds multiplies the guess estimate by at least 50, and 64 characters hold enough of them.
# Checked with thousands of 64-character strings glued from the most common words, keyboard
# rows, dates and digits: none scored below 4. The price is that a password whose first 64
# characters are one repeated run is refused even if the rest is strong.
ANALYSED_MAX_CHARS = 64

# zxcvbn undoes leetspeak by trying every consistent table of substitutions ('@'->'a',
# '1'->'i' or 'l', …) and running a full dictionary pass, quadratic in the length, for each.
# A 64-character string with all 20 leetspeak characters needs 736 tables and 3 s of CPU.
# The prefix is therefore cut where (tables x length^2) would exceed the work of 8 tables on
# 64 characters; a search for the slowest inputs under this budget found about 0.1 s of CPU.
# Ordinary passwords use few leetspeak characters and are not cut; random ones with many
# symbols are cut after 26 or more characters, still plenty to score 4.
_L33T_WORK_BUDGET = 8 * ANALYSED_MAX_CHARS**2

# Appended by people asked to "add a digit and a symbol": up to four digits (a year, "123"),
# then at most one symbol. Stripping it lets "Sunshine2024!" meet "sunshine" on the list.
_COMMON_SUFFIX = re.compile(r"[0-9]{0,4}[" + re.escape(string.punctuation) + r"]?\Z")

_MIN_REMOVED_CONTEXT_CHARS = 4

# The usual leetspeak substitutions. '1', '|' and '7' stand for 'i' or 't' as well as 'l',
# so each candidate is undone both ways.
_UNAMBIGUOUS_LEET = {"4": "a", "@": "a", "8": "b", "(": "c", "3": "e", "6": "g", "9": "g",
                     "!": "i", "0": "o", "$": "s", "5": "s", "+": "t"}
_UNLEET_AS_I = str.maketrans({**_UNAMBIGUOUS_LEET, "1": "i", "|": "i", "7": "t"})
_UNLEET_AS_L = str.maketrans({**_UNAMBIGUOUS_LEET, "1": "l", "|": "l", "7": "l"})

# zxcvbn keeps the caller's user inputs in a module-level dictionary between its matching
# steps, so two threads checking at once could score one person's password against another
# person's phone number. The lock makes each call whole; zxcvbn is pure Python and holds the
# GIL anyway, so serialising costs no throughput.
_ZXCVBN_LOCK = threading.Lock()


def normalise_password(password: str) -> str:
    """The form in which a password is measured. NFKC so that the same password typed on
    another keyboard or input method (full-width, composed or decomposed accents) is one
    password; the hashing and verifying code must apply the same normalisation."""
    return unicodedata.normalize("NFKC", password)


def check_new_password(password: str, *, context: Sequence[str] = ()) -> None:
    """Raise ``InvalidRequest`` unless ``password`` may be set as a new password.

    ``context``: strings about the account holder (phone number in each form the person
    might type it, name, e-mail) that make a password containing them weak.
    """
    if isinstance(context, str):
        # A bare string is a Sequence[str] of characters; each digit of a phone number as a
        # separate "word" would silently weaken the check.
        raise TypeError("context must be a sequence of strings, not one string")
    normalised = normalise_password(password)
    _check_length(normalised)
    _check_not_common(normalised)
    _check_strength(normalised, [normalise_password(item) for item in context if item])


def _check_length(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidRequest(
            f"The password is too short: use at least {MIN_LENGTH} characters. "
            "A few unrelated words make a long password that is easy to remember.",
            code="password_too_short", min_length=MIN_LENGTH,
        )
    if len(password) > MAX_LENGTH:
        raise InvalidRequest(
            f"The password is too long: use at most {MAX_LENGTH} characters.",
            code="password_too_long", max_length=MAX_LENGTH,
        )


def _check_not_common(password: str) -> None:
    folded = password.casefold()
    if folded in _common_passwords():
        raise InvalidRequest(
            "This password is one of the most common passwords, which attackers try first. "
            "Choose another one, for example a few unrelated words.",
            code="password_too_common",
        )
    if not _common_variants(folded).isdisjoint(_common_passwords()):
        raise InvalidRequest(
            "This password is a common password with small changes (capitals, digits, "
            "symbols or look-alike characters), which attackers try first. "
            "Choose another one, for example a few unrelated words.",
            code="password_too_common",
        )


def _common_variants(folded: str) -> set[str]:
    """``folded`` with a common suffix stripped and with leetspeak undone, in each
    combination. Variants shorter than four characters are left out: too short to say that
    the whole password was built from them."""
    stems = {folded, _COMMON_SUFFIX.sub("", folded)}
    variants = {
        variant
        for stem in stems
        for variant in (stem, stem.translate(_UNLEET_AS_I), stem.translate(_UNLEET_AS_L))
    }
    return {variant for variant in variants if len(variant) >= 4} - {folded}


@cache
def _common_passwords() -> frozenset[str]:
    """The "passwords" frequency list shipped inside zxcvbn: the 30,000 most frequent
    passwords (lower-cased, ASCII) of Mark Burnett's 10 million password corpus published by
    xato.net in 2015, built by zxcvbn's data-scripts/count_xato. Passwords that zxcvbn's
    pattern matchers already rate as weak (dates, keyboard rows, repeats) were left out of
    that list; the strength check still catches them."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    passwords: str | list[str] = FREQUENCY_LISTS["passwords"]
    # zxcvbn 4.5 stores each list as one comma-separated string; older releases as a list.
    words = passwords.split(",") if isinstance(passwords, str) else passwords
    return frozenset(words)


def _check_strength(password: str, context: list[str]) -> None:
    unknown_part = _without_context(password, context)
    if not unknown_part:
        # Nothing is left to guess (and zxcvbn cannot score an empty string).
        _refuse_as_weak(score=0, warning="", suggestions=[], uses_context=True)
    result = _zxcvbn(_analysed_prefix(unknown_part), context)
    score: int = result["score"]
    if score >= MIN_SCORE:
        return
    feedback: dict[str, Any] = result["feedback"]
    _refuse_as_weak(
        score=score,
        warning=feedback.get("warning") or "",
        suggestions=list(feedback.get("suggestions") or []),
        uses_context=unknown_part != password or _uses_context(result),
    )


def _refuse_as_weak(
    *, score: int, warning: str, suggestions: list[str], uses_context: bool,
) -> NoReturn:
    if uses_context:
        # zxcvbn has no warning for its user-input dictionary; say what we know.
        warning = "It contains your own details, such as your phone number."
    if not suggestions:
        suggestions = ["Add another word or two. Uncommon words are better."]
    detail = " ".join(
        part for part in ("This password is too easy to guess.", warning, suggestions[0])
        if part
    )
    raise InvalidRequest(
        detail, code="password_too_weak",
        score=score, min_score=MIN_SCORE, suggestions=suggestions,
    )


def _without_context(password: str, context: list[str]) -> str:
    """``password`` without the context items it contains (ignoring case), longest first.

    Someone who targets this person knows them, so only the rest must be guessed. zxcvbn's
    own user-input matching under-rates repeats: the phone number repeated to 64 characters
    scores 4. Items shorter than ``_MIN_REMOVED_CONTEXT_CHARS`` stay, left to zxcvbn's
    matching, because removing "li" everywhere would gut unrelated words."""
    for item in sorted(context, key=len, reverse=True):
        if len(item) >= _MIN_REMOVED_CONTEXT_CHARS:
            password = re.sub(re.escape(item), "", password, flags=re.IGNORECASE)
    return password


def _uses_context(result: dict[str, Any]) -> bool:
    return any(match.get("dictionary_name") == "user_inputs" for match in result["sequence"])


def _analysed_prefix(password: str) -> str:
    """The longest prefix of at most ``ANALYSED_MAX_CHARS`` characters whose leetspeak
    work (substitution tables x length^2) fits ``_L33T_WORK_BUDGET``.

    The work only grows when a leetspeak character appears for the first time, so the limit
    is recomputed there and the prefix is cut before a character that would break it."""
    leet_characters = _leet_characters()
    limit = min(len(password), ANALYSED_MAX_CHARS)
    seen: set[str] = set()
    for index, character in enumerate(password):
        if index >= limit:
            break
        if character not in leet_characters or character in seen:
            continue
        seen.add(character)
        tables = _substitution_tables("".join(sorted(seen)))
        longest_affordable = isqrt(_L33T_WORK_BUDGET // tables)
        limit = min(limit, max(index, longest_affordable))
    return password[:limit]


@cache
def _leet_characters() -> frozenset[str]:
    from zxcvbn.matching import L33T_TABLE

    return frozenset(character for subs in L33T_TABLE.values() for character in subs)


@lru_cache(maxsize=4096)  # bounded: the keys are chosen by whoever sends passwords
def _substitution_tables(leet_characters: str) -> int:
    """How many substitution tables zxcvbn tries for a password holding these characters:
    asked of zxcvbn itself, so that the bound follows its table if it ever changes."""
    from zxcvbn import matching

    subtable = matching.relevant_l33t_subtable(leet_characters, matching.L33T_TABLE)
    return max(1, len(matching.enumerate_l33t_subs(subtable)))


def _zxcvbn(password: str, user_inputs: list[str]) -> dict[str, Any]:
    from zxcvbn import zxcvbn

    with _ZXCVBN_LOCK:
        result: dict[str, Any] = zxcvbn(
            password, user_inputs=user_inputs, max_length=ANALYSED_MAX_CHARS,
        )
    return result
