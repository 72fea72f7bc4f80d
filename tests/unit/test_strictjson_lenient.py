"""What a model sends back (cog's webhooks) is kept readable: the API's strict parser refuses lone
surrogates and NaN at the front door, and the runner must not store them from a model either."""

import json

import pytest

from cogplane.domain.strictjson import is_strict, loads_lenient


def test_lone_surrogates_become_replacement_characters_keys_included():
    raw = json.dumps({"output": ["ok", "bad \ud800 end"], "logs": "x\udfff", "k\ud801": 1})
    value = loads_lenient(raw.encode())
    assert value == {"output": ["ok", "bad \ufffd end"], "logs": "x\ufffd", "k\ufffd": 1}
    assert is_strict(value)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # writable as UTF-8


def test_nan_and_infinity_become_null():
    assert loads_lenient('{"output": [NaN, Infinity, -Infinity, 1.5]}') == {"output": [None, None, None, 1.5]}


def test_valid_pairs_and_plain_text_are_unchanged():
    raw = json.dumps({"output": "emoji \U0001f600", "logs": "plain"})
    assert loads_lenient(raw) == {"output": "emoji \U0001f600", "logs": "plain"}


def test_not_json_is_still_refused():
    with pytest.raises(ValueError):
        loads_lenient(b"{not json")
