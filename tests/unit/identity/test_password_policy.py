"""The new-password policy: length after NFKC, breached-list lookups, zxcvbn strength with
the person's own details as context, bounded analysis time, and errors that never repeat
the password."""

from __future__ import annotations

import contextlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from anfu.errors import InvalidRequest
from anfu.identity.password_policy import (
    ANALYSED_MAX_CHARS,
    MAX_LENGTH,
    MIN_LENGTH,
    MIN_SCORE,
    check_new_password,
    normalise_password,
)

PHONE = "13800138000"
CONTEXT = (PHONE, "+86" + PHONE)

GOOD_PASSPHRASES = [
    "correct horse battery staple",
    "zebra-mango-quartz-lantern",
    "Wang Xiaoming flies 9 purple kites",
    "我的猫喜欢在屋顶上晒太阳",
    "correct horse battery staple " + PHONE,
]


def rejection(password: str, *, context: tuple[str, ...] = CONTEXT) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        check_new_password(password, context=context)
    return caught.value


def test_constants() -> None:
    assert (MIN_LENGTH, MAX_LENGTH, MIN_SCORE) == (8, 128, 3)


@pytest.mark.parametrize("password", GOOD_PASSPHRASES)
def test_good_passphrases_pass(password: str) -> None:
    check_new_password(password, context=CONTEXT)


def test_too_short() -> None:
    error = rejection("Zq7#kLm")
    assert error.code == "password_too_short"
    assert error.extra == {"min_length": MIN_LENGTH}
    assert str(MIN_LENGTH) in error.detail


def test_too_long() -> None:
    error = rejection("Zq7#kLm-" * 17)  # 136 characters
    assert error.code == "password_too_long"
    assert error.extra == {"max_length": MAX_LENGTH}


def test_length_limits_are_inclusive() -> None:
    check_new_password(("river-otter-quasar-" * 7)[:MAX_LENGTH], context=CONTEXT)
    # Eight characters pass the length rule, but zxcvbn caps any 8-character password at
    # 10^8 guesses (score 2), so in practice a password needs 9 characters or more.
    assert rejection("zQ7#kL2!").code == "password_too_weak"
    check_new_password("zQ7#kL2!w", context=CONTEXT)


def test_length_is_counted_after_nfkc_composition() -> None:
    # Eight code points typed, four characters once "e" + combining acute are composed.
    typed = "e\u0301" * 4
    assert len(typed) == 8
    assert rejection(typed).code == "password_too_short"


def test_length_is_counted_after_nfkc_expansion() -> None:
    # One ligature code point expands to 18 characters, so 8 typed code points are too long.
    typed = "\ufdfa" * 8
    assert len(normalise_password(typed)) == 144
    assert rejection(typed).code == "password_too_long"


def test_full_width_letters_are_their_ascii_password() -> None:
    full_width = "".join(chr(ord(letter) + 0xFEE0) for letter in "password")
    assert full_width != "password"
    assert normalise_password(full_width) == "password"
    assert rejection(full_width).code == "password_too_common"


@pytest.mark.parametrize("password", ["password", "PASSWORD", "Iloveyou", "1qaz2wsx3edc"])
def test_listed_password_is_too_common(password: str) -> None:
    error = rejection(password)
    assert error.code == "password_too_common"
    assert "most common passwords" in error.detail


@pytest.mark.parametrize("password", ["P@ssw0rd2024!", "Sunshine2024!", "m0nkey123!", "Dr4gon99"])
def test_variant_of_listed_password_is_too_common(password: str) -> None:
    error = rejection(password)
    assert error.code == "password_too_common"
    assert "small changes" in error.detail


def test_long_random_suffix_is_not_a_common_variant() -> None:
    # Only short suffixes are stripped: eight random digits are more than a small change.
    check_new_password("dragon84726150", context=CONTEXT)


def test_weak_password_explains_itself() -> None:
    error = rejection("Jordan23Jordan23")
    assert error.code == "password_too_weak"
    score = error.extra["score"]
    suggestions = error.extra["suggestions"]
    assert isinstance(score, int) and score < MIN_SCORE
    assert error.extra["min_score"] == MIN_SCORE
    assert suggestions and all(isinstance(s, str) for s in suggestions)
    assert error.detail.startswith("This password is too easy to guess.")
    assert "Repeats" in error.detail
    assert error.detail.endswith(suggestions[0])


def test_phone_number_in_password_makes_it_weaker() -> None:
    password = PHONE + "Tiger!"
    check_new_password(password)  # eleven unknown digits are hard to guess
    error = rejection(password, context=(PHONE,))
    assert error.code == "password_too_weak"
    assert "your phone number" in error.detail


def test_phone_number_repeated_is_weak() -> None:
    # zxcvbn alone scores this 4: its repeat matcher hides the user input.
    error = rejection(PHONE * 6)
    assert error.code == "password_too_weak"
    assert error.extra["score"] == 0


def test_context_matches_ignore_case() -> None:
    check_new_password("Liu.Yang.Tiger!")
    assert rejection("Liu.Yang.Tiger!", context=("liu.yang",)).code == "password_too_weak"


def test_context_must_not_be_a_bare_string() -> None:
    with pytest.raises(TypeError):
        check_new_password("correct horse battery staple", context=PHONE)


def test_only_a_prefix_is_analysed_so_a_leading_run_decides() -> None:
    # The documented price of the bounded analysis.
    strong_tail = "Vq8#zLm2!Rt5&Xw9"
    check_new_password(strong_tail, context=CONTEXT)
    assert rejection("a" * ANALYSED_MAX_CHARS + strong_tail).code == "password_too_weak"


@pytest.mark.parametrize("password", [
    "4@8({[<3691!|70$5%2+" * 6 + "4@8({[<3",  # all of zxcvbn's leetspeak characters
    "!+17|$5(<[{@4" + "!+17|" * 23,
    "Zq7#kLm-" * 16,
])
def test_worst_inputs_are_analysed_quickly(password: str) -> None:
    # Unbounded, zxcvbn needs about 3 s of CPU for the first; the policy keeps every input
    # near 0.1 s. CPU time, not wall time, so that a busy test machine does not fail this.
    started = time.process_time()
    with contextlib.suppress(InvalidRequest):
        check_new_password(password, context=CONTEXT)
    assert time.process_time() - started < 1.0


REJECTED = [
    ("Zq7#kLm", "password_too_short"),
    ("Zq7#kLm-" * 17, "password_too_long"),
    ("Sunshine2024!", "password_too_common"),
    ("Jordan23Jordan23", "password_too_weak"),
    (PHONE + "Tiger!", "password_too_weak"),
    ("qwertyuiop[]", "password_too_weak"),
]


@pytest.mark.parametrize(("password", "code"), REJECTED)
def test_errors_never_contain_the_password(password: str, code: str) -> None:
    error = rejection(password)
    assert error.code == code
    extra = json.dumps(error.extra, ensure_ascii=False).casefold()
    for shown in (extra, error.detail.casefold(), str(error).casefold()):
        assert password.casefold() not in shown
        assert normalise_password(password).casefold() not in shown


def test_concurrent_checks_keep_their_own_context() -> None:
    # zxcvbn keeps user inputs in a module-level dictionary; the policy serialises calls.
    password = PHONE + "Tiger!"

    def verdict(context: tuple[str, ...]) -> str:
        try:
            check_new_password(password, context=context)
        except InvalidRequest as error:
            return error.code
        return "accepted"

    contexts = [(PHONE,), ("18612345678",)] * 10
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(verdict, contexts))
    assert verdicts == ["password_too_weak", "accepted"] * 10
