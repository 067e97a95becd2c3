"""``broom whatif --html FILE``: one self-contained page with the run's counts, charts,
launches and suggested exemptions (what it holds; tests/e2e/test_whatif_browser.py
opens it in a real browser)."""
import json
import re
from html.parser import HTMLParser

from click.testing import CliRunner

from broom.cli import cli
from broom.whatif import html as page

from trail import instance_id, log_file, role, root, run_instances, user


def history(tmp_path):
    """A small month: violations by several principals, over several days."""
    who = [user("alice"), user("bob"), role("ci-deployer", "gh"), root()]
    records = []
    for k in range(24):
        ids = [instance_id() for _ in range(1 + k % 3)]
        code = [None, "LOL", "NOPE", "GGG"][k % 4]
        records.append(run_instances(ids, k * 20000, who=who[k % 4],
                                     tags=None if code is None else {"Code": code}))
    log_file(tmp_path / "trail", records)
    return tmp_path / "trail"


def run(tmp_path, *args):
    out = tmp_path / "page.html"
    result = CliRunner().invoke(cli, ["whatif", "--no-progress", "--html", str(out),
                                      *[str(a) for a in args]], catch_exceptions=False)
    return result, out.read_text() if out.exists() else None


class Parsed(HTMLParser):
    """Cards, table rows and every URL-bearing attribute of the page."""

    def __init__(self, text):
        super().__init__()
        self.cards, self.rows, self.urls, self._card = {}, [], [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and "data-count" in attrs:
            self._card = attrs["data-count"]
        if tag == "b" and self._card:
            self._value = True
        if tag == "tr" and "data-verdict" in attrs:
            self.rows.append(attrs)
        for name in ("src", "href", "action", "xlink:href"):
            if name in attrs:
                self.urls.append(attrs[name])

    def handle_data(self, data):
        if self._card and getattr(self, "_value", False):
            self.cards[self._card] = int(data)
            self._card, self._value = None, False


def test_the_page_shows_the_counts_the_summary_gives(tmp_path):
    trail = history(tmp_path)
    result, text = run(tmp_path, trail)
    json_run = CliRunner().invoke(cli, ["whatif", "--json", "--no-progress", str(trail)])
    summary = json.loads(json_run.stdout)["summary"]

    assert result.exit_code == 0
    parsed = Parsed(text)
    assert parsed.cards["launches"] == summary["launches"] == 24
    assert parsed.cards["instances"] == summary["instances"]
    assert parsed.cards["violations"] == summary["verdicts"]["violation"]
    assert parsed.cards["would terminate"] == summary["actions"].get("terminate", 0)
    assert parsed.cards["SCP refusals"] == summary["scp"].get("deny", 0)
    assert len(parsed.rows) == summary["instances"]
    assert sum(r["data-verdict"] == "violation" for r in parsed.rows) == \
        summary["verdicts"]["violation"]
    assert "exempt-principals:" in text  # the suggested exemptions
    assert text.count("<svg") == 5  # over time; by account, principal, code; SCP refusals
    # the text output still goes to stdout
    assert "Violations per creator" in result.stdout


def test_the_page_needs_no_network(tmp_path):
    _, text = run(tmp_path, history(tmp_path))
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text).group(1)
    assert "default-src 'none'" in csp
    assert Parsed(text).urls == []
    assert not re.search(r"(?:src|href)\s*=|@import|url\(", text)


def test_untrusted_names_are_text_not_markup(tmp_path):
    hostile = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    records = [run_instances([instance_id()], 0, who=role("x", "s", path=""))]
    records[0]["userIdentity"]["sessionContext"]["sessionIssuer"]["userName"] = hostile
    records.append(run_instances([instance_id()], 10, tags={"Code": hostile}))
    log_file(tmp_path / "trail", records)
    _, text = run(tmp_path, tmp_path / "trail")

    assert "<script>alert" not in text and "<img" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert Parsed(text).urls == []


def test_a_long_history_lists_the_first_rows_and_says_how_many_more(tmp_path, monkeypatch):
    monkeypatch.setattr(page, "MAX_ROWS", 5)
    _, text = run(tmp_path, history(tmp_path))
    parsed = Parsed(text)
    assert len(parsed.rows) == 5
    assert "The table lists the first 5 instances; %d more are counted" % (
        parsed.cards["instances"] - 5) in text


def test_an_empty_history_still_makes_a_page(tmp_path):
    log_file(tmp_path / "trail", [])
    result, text = run(tmp_path, tmp_path / "trail")
    assert result.exit_code == 0
    assert Parsed(text).cards["launches"] == 0
    assert "No violations." in text
