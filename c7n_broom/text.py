"""Untrusted text in Broom's messages: ``readable`` for people, ``attribute`` for machines.

Tag values (EC2 accepts any characters), instance names, user and session names (chosen by
whoever made the call) all reach a report. Reports are read in mail clients, and are often
forwarded to chat (AWS Chatbot, Slack or Teams e-mail integrations), so such a value must
neither change the report's layout nor become live markup there. :func:`readable` is the
one function every human-readable field goes through, at the moment the report is
rendered (values are kept as recorded until then, so exemptions match what AWS recorded).
Its rules, in this order:

1. Anything is accepted: None gives "", other non-strings their ``str()``, and a value
   whose ``str()`` fails (an int too long to print) gives "". It never raises.
2. Canonical composition (NFC), so "e" + U+0301 shows as one accented letter.
3. Control, format, surrogate, private-use and unassigned characters, and the line and
   paragraph separators U+2028 / U+2029, are escaped visibly: ``\\x0a``, ``\\u202e``,
   ``\\U000e0001``. The text stays on one line and cannot be reordered (RLO) or hidden.
4. A run of white space (category Zs: spaces, no-break and ideographic spaces) becomes one
   ASCII space. It is not stripped, so a quoted ``" LOL"`` still shows its space.
5. A run of combining marks (Mn, Me) keeps its first mark only, so Zalgo text cannot spill
   over neighbouring lines. Spacing marks (Mc) are kept. This also drops the second mark of
   some real text (Thai tone marks over vowels, Hindi "हैं"): the word stays readable.
6. ``&``, ``<`` and ``>`` become ``&amp;``, ``&lt;`` and ``&gt;`` (HTML's escaping and Slack's
   prescribed one), so no tag, ``<!channel>``, ``<@U123>`` or ``<http://x|text>`` can form.
7. ``@`` and ``!`` at the start of a word (not after a letter or digit) become the
   fullwidth ``＠`` (U+FF20) and ``！`` (U+FF01): ``@here`` shows as ``＠here``, which no chat
   tool treats as a mention, while ``alice@example.com`` is left as it is.
8. ``](`` becomes ``] (`` so ``[text](url)`` and ``![x](y)`` are no Markdown link or image:
   the URL is shown instead of hidden behind the text.
9. At most ``limit`` characters: a longer result is cut between escapes (never inside
   ``&amp;`` or ``\\u202e``) and ends with "…".

Escaping markup is not idempotent: ``readable("&")`` is "&amp;" and ``readable("&amp;")``
is "&amp;amp;". Escape a value once, when it is put in a report, never a report again;
to shorten rendered text (a table column, the subject) use :func:`clip`, which never
leaves half an entity or escape behind.

:func:`attribute` is for SNS message attributes, read by programs (subscription filter
policies, queues): it keeps the true value and only removes what SNS cannot carry.

Pure functions on plain data: the standard library only.
"""
import re
import unicodedata

#: Longest human-readable field, escapes and "…" included.
MAX_LENGTH = 256
#: Longest attribute value: the longest ARN IAM allows, so a real ARN is never cut.
#: Ten attributes of 2048 characters (4 bytes each at most in UTF-8) stay far below the
#: 256 KB SNS allows a message, attributes included.
MAX_ATTRIBUTE_LENGTH = 2048
#: Longer input is cut before it is looked at (EventBridge events are at most 256 KB).
_MAX_INPUT = 64 * MAX_LENGTH

_ESCAPED = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MENTIONS = {"@": "\uff20", "!": "\uff01"}  # fullwidth commercial at, exclamation mark
_MARKS = frozenset({"Mn", "Me"})
# ASCII that every rule leaves as it is, whatever its neighbours (not & < > @ ! nor
# controls; a double space or "](" is checked apart).
_PLAIN = re.compile(r"[A-Za-z0-9 ._:/=+,#%*$'\"?;~^`{}|\[\]()\\-]*\Z")
# The start of an entity or of a visible escape, left at the end of a cut text.
_PARTIAL_ESCAPE = re.compile(r"&[a-z]*\Z|\\(?:x[0-9a-f]?|u[0-9a-f]{0,3}|U[0-9a-f]{0,7})?\Z")


def as_text(value):
    """``value`` as a str: "" for None and for anything whose ``str()`` fails."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:  # e.g. ValueError for an int beyond sys.get_int_max_str_digits()
        return ""


def _visible(char):
    """``\\x0a``, ``\\u202e`` or ``\\U000e0001`` for a character that must not be shown raw."""
    code = ord(char)
    if code < 0x100:
        return "\\x%02x" % code
    return "\\u%04x" % code if code < 0x10000 else "\\U%08x" % code


def _tokens(text):
    """The rendering of each character of ``text`` (rules 3 to 8), in order; "" if dropped."""
    previous, previous_category = "", ""
    for char in text:
        category = unicodedata.category(char)
        if category[0] == "C" or category in ("Zl", "Zp"):
            token = _visible(char)
        elif category == "Zs":
            token = "" if previous_category == "Zs" else " "
        elif category in _MARKS:
            token = "" if previous_category in _MARKS else char
        elif char in _ESCAPED:
            token = _ESCAPED[char]
        elif char in _MENTIONS and not previous.isalnum():
            token = _MENTIONS[char]
        elif char == "(" and previous == "]":
            token = " ("
        else:
            token = char
        previous, previous_category = char, category
        yield token


def readable(value, limit=MAX_LENGTH):
    """``value`` as one line of inert, printable text for a person (module docstring)."""
    text = as_text(value)
    limit = max(1, limit)
    if len(text) <= limit and _PLAIN.match(text) and "  " not in text and "](" not in text:
        return text  # nothing the rules change (most values): as _rendered gives it
    return _rendered(text, limit)


def _rendered(text, limit):
    """Rules 2 to 9 applied to ``text``, character by character."""
    text = unicodedata.normalize("NFC", text[:_MAX_INPUT])
    out, length = [], 0
    for token in _tokens(text):
        if length + len(token) > limit:  # cut between tokens, with room for the ellipsis
            while out and length > limit - 1:
                length -= len(out.pop())
            return "".join(out) + "…"
        out.append(token)
        length += len(token)
    return "".join(out)


def clip(rendered, limit):
    """``rendered`` (made of readable() values) cut to at most ``limit`` characters, never
    inside an entity or a visible escape: "&am" or "\\u20" is dropped (HTML reads "&lt"
    without its ";" as "<")."""
    if len(rendered) <= limit:
        return rendered
    return _PARTIAL_ESCAPE.sub("", rendered[:limit])


def _carried(char):
    """True for the characters SNS carries: #x9 | #xA | #xD | #x20-#xD7FF |
    #xE000-#xFFFD | #x10000-#x10FFFF (the XML character set)."""
    code = ord(char)
    return (code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD
            or code >= 0x10000)


def attribute(value, limit=MAX_ATTRIBUTE_LENGTH):
    """``value`` for an SNS String attribute: the true value, not escaped, less the
    characters SNS cannot carry, at most ``limit`` characters (ending in "..." if cut).
    "" means "no value": SNS refuses an empty attribute, so leave it out."""
    text = "".join(filter(_carried, as_text(value)[: limit + 1]))
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Characters chat markdown (Slack mrkdwn, Teams markdown, as AWS Chatbot renders
#: ``client-markdown``) would treat as formatting inside a code span or at its edge.
_CODE_BREAKERS = {"`": "\uff40"}  # fullwidth grave accent


def markdown(value, limit=MAX_LENGTH):
    """``value`` for chat markdown: :func:`readable`, shown as an inline code span.

    Inside a code span Slack and Teams apply no bold, italics, strike-through, headings,
    quotes or lists, and turn no URL into a link; readable() already took away what
    would still be live there (``<!channel>``, ``<url|text>``, ``@here``, ``[t](u)``).
    A backtick, the one character that could end the span early and let the rest
    render, is shown as the fullwidth ``｀`` (U+FF40). An empty value shows as
    ``(none)``, outside any span.
    """
    shown = readable(value, limit)
    if not shown:
        return "(none)"
    for char, replacement in _CODE_BREAKERS.items():
        shown = shown.replace(char, replacement)
    return "`%s`" % shown


_SURROGATE = re.compile("[\ud800-\udfff]")


def true_value(value, limit=MAX_ATTRIBUTE_LENGTH):
    """``value`` for a JSON document read by programs: the true value, not escaped (JSON
    escapes what it must), at most ``limit`` characters (ending in "..." if cut). Only a
    lone surrogate, which no UTF-8 text can hold, becomes U+FFFD."""
    text = _SURROGATE.sub("\ufffd", as_text(value)[: limit + 1])
    return text if len(text) <= limit else text[: limit - 3] + "..."
