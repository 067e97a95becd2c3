"""c7n_broom.text: untrusted values made readable for people, carriable for SNS."""
import ast
import sys
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from c7n_broom import text
from c7n_broom.text import attribute, readable

from support import assert_inert, marks_in_a_row


@pytest.mark.parametrize("raw, shown", [
    ("a\nb", "a\\x0ab"), ("tab\there", "tab\\x09here"), ("\u202eevil", "\\u202eevil"),
    ("a\u2028b", "a\\u2028b"), ("\ud800", "\\ud800"), ("tag\U000e0041", "tag\\U000e0041"),
    ("caf\u00e9", "caf\u00e9"), ("cafe\u0301", "caf\u00e9"), (None, ""), (42, "42"),
    ("<!channel> @here <b>x</b>", "&lt;\uff01channel&gt; \uff20here &lt;b&gt;x&lt;/b&gt;"),
    ("@everyone", "\uff20everyone"), ("!here", "\uff01here"), ("(@alice)", "(\uff20alice)"),
    ("<@U024BE7LH>", "&lt;\uff20U024BE7LH&gt;"), ("R&D", "R&amp;D"),
    ("alice@example.com", "alice@example.com"), ("Hello!", "Hello!"),
    ("[click](http://evil.example)", "[click] (http://evil.example)"),
    ("![x](http://evil.example/x.png)", "\uff01[x] (http://evil.example/x.png)"),
    ("a" + " " * 50 + "b", "a b"), ("no\u00a0\u3000break", "no break"), (" LOL ", " LOL "),
    ("Z\u0351\u0352\u0357a\u0300\u0301lgo", "Z\u0351\u00e0\u0301lgo"),
], ids=repr)
def test_readable_shows_the_value_inert_on_one_line(raw, shown):
    assert readable(raw) == shown
    assert_inert(readable(raw))


class Unprintable:
    def __str__(self):
        raise RuntimeError("no text")


@pytest.mark.parametrize("value", [10 ** 5000, -(10 ** 5000), Unprintable()],
                         ids=["huge-int", "huge-negative-int", "str-raises"])
def test_readable_and_attribute_never_raise(value):
    assert readable(value) == ""
    assert attribute(value) == ""


@settings(max_examples=300)
@given(st.text(st.sampled_from("aZ09 .:/=+,#%*$'\"?;~^`{}|[]()\\-&<>@!\t\u00a0\u202e"),
               max_size=40), st.integers(1, 50))
def test_the_plain_ascii_shortcut_renders_as_the_rules_do(value, limit):
    """Most values are plain ASCII that no rule changes: readable returns them as they
    are, and must give exactly what the rules give."""
    assert readable(value, limit) == text._rendered(value, limit)


def test_long_values_are_cut_to_the_limit_with_an_ellipsis():
    assert readable("x" * 300) == "x" * 255 + "\u2026"
    assert len(readable("x" * 100_000, 20)) == 20
    assert readable("x" * 256) == "x" * 256


def test_cutting_never_splits_an_escape():
    assert readable("&" * 300) == "&amp;" * 51 + "\u2026"
    assert readable("\u202e" * 300) == "\\u202e" * 42 + "\u2026"


@pytest.mark.parametrize("rendered, limit, cut", [
    ("ab&amp;", 4, "ab"), ("ab&amp;", 7, "ab&amp;"), ("a\\u202e", 5, "a"),
    ("a\\x0ab", 5, "a\\x0a"), ("a\\x0ab", 4, "a"), ("[x] (y)", 4, "[x] "),
])
def test_clip_never_cuts_inside_an_entity_or_an_escape(rendered, limit, cut):
    assert text.clip(rendered, limit) == cut


def test_escaping_markup_twice_escapes_it_twice():
    """Documented: not idempotent for markup, so escape once, when rendering."""
    assert readable(readable("&")) == "&amp;amp;"
    assert readable(readable("a\nb")) == "a\\x0ab"  # the visible escape is plain text


def test_zalgo_text_keeps_one_mark_per_letter():
    zalgo = "".join(letter + "\u0300\u0316\u0317\u0318\u0319\u031a" * 5 for letter in "HELP")

    shown = readable(zalgo)

    assert marks_in_a_row(shown) == 1
    assert len(shown) < len(zalgo) / 10
    assert "".join(c for c in unicodedata.normalize("NFD", shown)
                   if not unicodedata.combining(c)) == "HELP"


def test_attribute_keeps_the_true_value_and_drops_only_what_sns_cannot_carry():
    assert attribute("<!channel> @here\n\t[x](y) \u202e ") == "<!channel> @here\n\t[x](y) \u202e "
    assert attribute("a\x00b\x1f\ud800\ufffe\uffff\U0001f600") == "ab\U0001f600"
    assert attribute(None) == attribute("\x00") == ""
    assert attribute(42) == "42"


def test_attribute_is_capped_for_the_sns_message_size():
    arn = "arn:aws:iam::123456789012:role/" + "p/" * 1000
    assert attribute(arn[:2048]) == arn[:2048]
    assert attribute("x" * 100_000) == "x" * 2045 + "..."


def test_module_imports_only_the_standard_library():
    tree = ast.parse(Path(text.__file__).read_text())
    imported = {alias.name.partition(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.partition(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= sys.stdlib_module_names


# Any character, biased towards markup, spaces, marks and the characters escaped.
hostile = st.lists(st.characters(exclude_categories=()) | st.sampled_from(
    list("<>&@![]() \u00a0\u0300\u0301\u202e\n") + ["&amp;", "](", "@here", "<!channel>"]),
    max_size=80).map("".join)
hostile_values = hostile | st.none() | st.integers() | st.floats()


@settings(max_examples=500, deadline=None)
@given(value=hostile_values, limit=st.integers(1, 300))
def test_readable_output_is_always_inert_one_line_and_capped(value, limit):
    shown = readable(value, limit)
    assert type(shown) is str and len(shown) <= limit
    assert_inert(shown)
    assert "\n" not in shown and "  " not in shown
    assert marks_in_a_row(shown) <= 1


@settings(max_examples=300, deadline=None)
@given(value=hostile, limit=st.integers(1, 100))
def test_a_clipped_readable_value_stays_inert(value, limit):
    assert_inert(text.clip(readable(value), limit))


@settings(max_examples=500, deadline=None)
@given(value=hostile)
def test_attribute_is_the_value_less_what_sns_cannot_carry(value):
    carried = attribute(value)
    assert carried == "".join(
        c for c in value if c in "\t\n\r" or " " <= c <= "\ud7ff"
        or "\ue000" <= c <= "\ufffd" or c >= "\U00010000")
