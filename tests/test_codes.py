"""The Code tag rule as a table: pure functions, no AWS."""
import pytest

from c7n_broom import codes

ALLOWED = ["LOL", "GGG", "BRB", "YLO"]


@pytest.mark.parametrize("value, ignore_case, reason", [
    (None, False, "missing"),
    ("", False, "empty"),
    ("   ", False, "empty"),
    ("\t\n", False, "empty"),
    ("LOL", False, None),
    ("YLO", False, None),
    ("lol", False, "invalid"),
    ("lol", True, None),
    ("Brb", True, None),
    ("XYZ", False, "invalid"),
    ("XYZ", True, "invalid"),
    (" LOL", False, "invalid"),
    ("LOL ", True, "invalid"),
    ("LOLX", False, "invalid"),
])
def test_classify_table(value, ignore_case, reason):
    verdict = codes.classify(value, ALLOWED, ignore_case)
    assert (verdict.reason if verdict else None) == reason


def test_invalid_violation_keeps_the_value_seen():
    assert codes.classify("XYZ", ALLOWED).as_dict() == {"reason": "invalid", "value": "XYZ"}


@pytest.mark.parametrize("raw, parsed", [
    (["LOL", "GGG"], ["LOL", "GGG"]),
    ("LOL,GGG", ["LOL", "GGG"]),
    (" LOL , GGG ,", ["LOL", "GGG"]),
    ("ABC", ["ABC"]),
])
def test_parse_codes_accepts_lists_and_comma_strings(raw, parsed):
    assert codes.parse_codes(raw) == parsed


@pytest.mark.parametrize("raw, message", [
    ([], "empty"),
    ("", "empty"),
    (" , ", "empty"),
    (["LOL", 3], "must be strings"),
    (["LOL", None], "must be strings"),
    (["LOL", " "], "whitespace"),
    (42, "list of strings"),
    ({"a": 1}, "list of strings"),
])
def test_parse_codes_rejects_bad_lists_with_a_reason(raw, message):
    with pytest.raises(ValueError, match=message):
        codes.parse_codes(raw)


@pytest.mark.parametrize("value, unset", [
    (None, True),
    ("{broom_codes}", True),
    (" {broom_topic} ", True),
    ("LOL,GGG", False),
    (["LOL"], False),
    ("arn:aws:sns:us-east-1:123456789012:x", False),
])
def test_unexpanded_placeholder_means_unset(value, unset):
    assert codes.is_unset(value) is unset
