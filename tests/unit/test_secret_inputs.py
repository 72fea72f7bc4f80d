"""Secret inputs (cogplane.sealing): found in the schema, redacted, sealed for the runner only."""

from __future__ import annotations

import pytest

from cogplane.sealing import REDACTED, SealError, SecretBox, scrub, secret_inputs, split_secrets

SECRET = {"type": "string", "format": "password", "writeOnly": True, "x-cog-secret": True}


def schema(**props):
    return {"components": {"schemas": {"Input": {"type": "object", "properties": props}}}}


def test_secret_inputs_are_the_x_cog_secret_properties_and_lists_of_them():
    s = schema(
        prompt={"type": "string", "x-order": 0},
        api_key={**SECRET, "x-order": 1},
        keys={"type": "array", "items": SECRET, "x-order": 2},
        pw={"type": "string", "format": "password", "x-order": 3},
    )  # no x-cog-secret: not cog's Secret
    assert secret_inputs(s) == {"api_key": False, "keys": True}


def test_split_stores_asterisks_and_keeps_the_values():
    s = schema(prompt={"type": "string"}, api_key=SECRET, keys={"type": "array", "items": SECRET}, unused=SECRET)
    stored, secrets = split_secrets(s, {"prompt": "p", "api_key": "sk-123456", "keys": ["a", "b"]})
    assert stored == {"prompt": "p", "api_key": REDACTED, "keys": [REDACTED, REDACTED]}
    assert secrets == {"api_key": "sk-123456", "keys": ["a", "b"]}


def test_sealed_values_open_only_for_their_prediction_and_key():
    box = SecretBox(b"install-secret")
    sealed = box.seal("p1", {"api_key": "sk-123456"})
    assert "sk-123456" not in sealed
    assert box.seal("p1", {"api_key": "sk-123456"}) != sealed  # a fresh nonce each time
    assert box.open("p1", sealed) == {"api_key": "sk-123456"}
    with pytest.raises(SealError):
        box.open("p2", sealed)  # bound to the prediction id
    with pytest.raises(SealError):
        SecretBox(b"another-install").open("p1", sealed)
    with pytest.raises(SealError):
        box.open("p1", sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1])


def test_scrub_replaces_secret_values_in_text():
    assert scrub("key sk-123456 failed", {"k": "sk-123456"}) == f"key {REDACTED} failed"
    assert scrub("a b", {"k": "a"}) == "a b"  # values under 4 characters are left alone
    assert scrub(None, {"k": "sk-123456"}) is None
