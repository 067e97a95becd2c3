"""The Code tag rule as a table: pure functions, no AWS."""
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    ("{_x9}", True),
    ("LOL,GGG", False),
    (["LOL"], False),
    ("arn:aws:sns:us-east-1:123456789012:x", False),
    # Not one whole placeholder of a var name Custodian can fill: a var's value that
    # holds braces, or a typo; never "the account set no such var".
    ("{report-only}", False),
    ("{LOL},{GGG}", False),
    ("{}", False),
    ("{ broom_codes }", False),
    ("{1st}", False),
    ("{a.b}", False),
    ("{a[0]}", False),
    ("{{broom_codes}}", False),
    ("x{broom_codes}", False),
])
def test_unexpanded_placeholder_means_unset(value, unset):
    assert codes.is_unset(value) is unset


@pytest.mark.parametrize("option, value, variables, says", [
    ("enforcement", "{report-only}", {"broom_enforcement": "{report-only}", "x": "y"},
     "'enforcement' is '{report-only}' (var broom_enforcement): a var's value must not "
     "contain braces; set broom_enforcement: report-only"),
    ("codes-override", "{LOL},{GGG}", {}, "'codes-override' is '{LOL},{GGG}': braces are "
     "allowed only as one whole \"{var_name}\" placeholder, and a var's value must not "
     "contain any; use LOL,GGG"),
    # A var whose whole value looks like a placeholder: known only from the vars.
    ("codes-override", "{LOL}", {"broom_codes": "{LOL}"},
     "'codes-override' is '{LOL}' (var broom_codes): a var's value must not contain "
     "braces; set broom_codes: LOL"),
    ("codes-override", ["{LOL}", "GGG"], {"broom_codes": ["{LOL}", "GGG"]},
     "'codes-override' is ['{LOL}', 'GGG'] (var broom_codes): a var's value must not "
     "contain braces; set broom_codes: [LOL, GGG]"),
    ("topic-override", "arn:aws:sns:{region}:1:t", {}, "'topic-override' is "
     "'arn:aws:sns:{region}:1:t': braces are allowed only"),
    ("exempt-accounts", "{111111111111}", {}, "'exempt-accounts' is '{111111111111}': "),
])
def test_braces_left_after_expansion_are_an_error(option, value, variables, says):
    assert codes.var_error(option, value, variables).startswith(says)


@pytest.mark.parametrize("value, variables", [
    (None, {}), (5, {}), ("report-only", {"broom_enforcement": "report-only"}),
    (["LOL", "GGG"], {}), ("{broom_codes}", {}), ("{broom_codes}", {"other": "{x}"}),
])
def test_values_without_stray_braces_pass(value, variables):
    assert codes.var_error("codes-override", value, variables) is None


@pytest.mark.parametrize("raw", [["LOL", "{GGG}"], "LOL,{GGG}", ["LOL}"]])
def test_parse_codes_refuses_codes_with_braces(raw):
    with pytest.raises(ValueError, match="contains braces"):
        codes.parse_codes(raw)


# --- ignore-case: ASCII case and simple one-to-one case pairs only (issue 8, part 5) ---
#
# str.casefold applies Unicode's full and compatibility-like foldings: the Kelvin sign
# folds to "k", "ß" and "ẞ" to "ss", the ligature "ﬀ" to "ff", the long s "ſ" to "s".
# Each of these let a lookalike value pass as an allowed ASCII code.

LOOKALIKES = [
    ("\u212aEY", "KEY"),        # KELVIN SIGN for K
    ("ß", "SS"),                # sharp s: casefold "ss"
    ("ẞ", "SS"),                # capital sharp s: casefold "ss"
    ("PAß", "PASS"),
    ("ſS", "SS"),               # long s: casefold "s", upper "S"
    ("ﬀ", "FF"),                # ligature ff
    ("ﬆOP", "STOP"),            # ligature st
    ("ıD", "ID"),               # dotless i: upper "I"
    ("İD", "ID"),               # dotted capital I: lower "i̇"
    ("ＬＯＬ", "LOL"),            # fullwidth letters
    ("ｌｏｌ", "LOL"),
    ("LOL\u0307", "LOL"),       # a combining mark added
    ("\u2126", "\u03c9"),        # OHM SIGN for omega: casefold "ω"
    ("\u212b", "\u00e5"),        # ANGSTROM SIGN for a-ring: casefold "å"
]


@pytest.mark.parametrize("value, code", LOOKALIKES)
def test_ignore_case_does_not_let_a_lookalike_pass(value, code):
    assert codes.classify(value, [code], ignore_case=True).reason == "invalid"


@pytest.mark.parametrize("value, code", [
    ("lol", "LOL"), ("Lol", "LOL"), ("lOl", "LOL"), ("LOL", "lol"), ("a1-b", "A1-B"),
    ("été", "ÉTÉ"), ("Straße", "STRAßE"),  # non-ASCII letters with a 1:1 case pair
    ("ΣΟΦΙΑ", "σοφια"),
])
def test_ignore_case_matches_simple_case_variants(value, code):
    assert codes.classify(value, [code], ignore_case=True) is None


def test_no_non_ascii_character_matches_an_ascii_code_under_ignore_case():
    """Every code point, against every ASCII string its case mappings, case folding
    or compatibility decomposition lead to (and their other case)."""
    for point in range(0x80, sys.maxunicode + 1):
        char = chr(point)
        targets = {char.lower(), char.upper(), char.casefold(),
                   unicodedata.normalize("NFKC", char)}
        targets = {t for t in targets if t.isascii() and t.strip()}
        for target in targets | {t.swapcase() for t in targets}:
            assert codes.classify(char, [target], ignore_case=True) is not None, (
                "U+%04X matches %r" % (point, target))


FULLWIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}
SIMILAR = {"k": "\u212a", "s": "ſ", "i": "ı", "I": "İ", "a": "а", "o": "о", "e": "е"}
ascii_codes = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijkstuvxyz0123-_"),
                      min_size=1, max_size=6)


@st.composite
def disguised(draw, code):
    """The code, each character kept, case-swapped, or swapped for a lookalike."""
    out = []
    for char in code:
        out.append(draw(st.sampled_from([
            char, char.swapcase(), FULLWIDTH.get(char, char), SIMILAR.get(char, char),
            SIMILAR.get(char.lower(), char), char + "\u0301"])))
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), code=ascii_codes)
def test_ignore_case_on_an_ascii_code_means_ascii_case_only(data, code):
    value = data.draw(st.one_of(disguised(code), st.text(max_size=8)))
    matched = codes.classify(value, [code], ignore_case=True) is None
    assert matched == (value.isascii() and value.lower() == code.lower())


def same_up_to_simple_case(a, b):
    """a and b are one character that differs at most by case: one is the other's
    one-character lower or upper case, and neither is ASCII unless both are."""
    return a == b or (a.isascii() == b.isascii() and (b in (a.lower(), a.upper())
                                                      or a in (b.lower(), b.upper())))


@settings(max_examples=300, deadline=None)
@given(value=st.text(min_size=1, max_size=6), code=st.text(min_size=1, max_size=6))
def test_ignore_case_matches_only_character_by_character(value, code):
    if codes.classify(value, [code], ignore_case=True) is None:
        assert len(value) == len(code)
        assert all(same_up_to_simple_case(v, c) for v, c in zip(value, code, strict=True))


@settings(max_examples=200, deadline=None)
@given(code=st.text(min_size=1, max_size=6).filter(str.strip))
def test_ignore_case_matches_the_code_itself_and_its_ascii_case_swaps(code):
    swapped = "".join(c.swapcase() if c.isascii() else c for c in code)
    assert codes.classify(code, [code], ignore_case=True) is None
    assert codes.classify(swapped, [code], ignore_case=True) is None
