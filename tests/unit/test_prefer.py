"""`Prefer: wait[=N]` as sent by clients and fuzzers (RFC 7240): never an error, clamped to the cap."""

from __future__ import annotations

from functions.api.routers.predictions import parse_prefer


def test_a_wait_with_thousands_of_digits_is_the_cap_not_a_crash() -> None:
    # int() refuses strings over 4300 digits (Python 3.11+): this was a 500
    assert parse_prefer("wait=" + "9" * 5000, 60) == 60
    assert parse_prefer("wait=" + "0" * 5000 + "5", 60) == 5


def test_malformed_waits_are_ignored_and_odd_ones_clamped() -> None:
    assert parse_prefer("wait=abc", 60) is None
    assert parse_prefer("wait=-1", 60) is None
    assert parse_prefer("wait=", 60) is None
    assert parse_prefer("wait=99999", 60) == 60
    assert parse_prefer("wait=0", 60) == 1
    assert parse_prefer("wait", 60) == 60


def test_preference_parameters_and_quoted_values_are_understood() -> None:
    assert parse_prefer("wait=5; foo=bar", 60) == 5
    assert parse_prefer('wait="7"', 60) == 7
    assert parse_prefer("respond-async, wait=3", 60) == 3
