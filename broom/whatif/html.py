"""``broom whatif --html FILE``: the run as one self-contained HTML page.

A summary (launches, violations, would-terminate, SCP refusals), charts of violations
over time and by account, principal and code, the table of launches with filters, and
the suggested exemptions. Everything is inline: CSS, a small script for the filters,
and the charts as SVG drawn here, on the server side (bars and labels need no charting
library). The page's Content-Security-Policy forbids every fetch, so opening it never
touches the network.

Every value from a record (creator names, codes, ids, reasons) is untrusted: it reaches
the page only through :func:`html.escape`, as text or a quoted attribute.

The table keeps the first :data:`MAX_ROWS` instances (the counts and charts cover every
launch); the page says when rows were left out.
"""
import html
import json
from collections import Counter
from datetime import datetime, timezone

from broom.whatif import evaluate, output
from c7n_broom.events import parse_time

MAX_ROWS = 5000
TOP = 10
CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:; base-uri 'none'; form-action 'none'")
COLOURS = {evaluate.TERMINATE: "#c0392b", evaluate.REPORT_ONLY: "#e67e22",
           evaluate.EXEMPT: "#2980b9", evaluate.HELD: "#8e44ad", evaluate.FLEET: "#16a085",
           evaluate.NONE: "#7f8c8d"}


def esc(value):
    return html.escape("" if value is None else str(value), quote=True)


class HtmlOutput:
    """Wraps the command's text or JSON output: passes every launch on, keeps what the
    page needs, and writes the page at ``finish``."""

    def __init__(self, path, inner, policy="", clock=None):
        self.path, self.inner, self.policy = path, inner, policy
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.rows = []
        self.omitted = 0
        self.days = Counter()  # (day, action) -> violations
        self.first = self.last = None

    @property
    def tally(self):
        return self.inner.tally

    def launch(self, result):
        self.inner.launch(result)
        when = parse_time(result.get("event_time"))
        if when is not None:
            when = when.astimezone(timezone.utc)
            self.first = when if self.first is None else min(self.first, when)
            self.last = when if self.last is None else max(self.last, when)
        day = when.strftime("%Y-%m-%d") if when else "unknown"
        for instance in result["instances"] or [None]:
            if instance and instance["verdict"] == evaluate.VIOLATION:
                self.days[(day, instance["action"])] += 1
            if len(self.rows) < MAX_ROWS:
                self.rows.append(row(result, instance))
            else:
                self.omitted += 1

    def finish(self, stats, skipped):
        self.inner.finish(stats, skipped)
        page = render(self.tally, self.rows, self.omitted, self.days, stats, skipped,
                      self.policy, self.first, self.last, self.clock())
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(page)


def row(result, instance):
    """One table row: a launch's instance (None: a failed call that launched none)."""
    base = {"time": result.get("event_time") or "", "account": result.get("account") or "",
            "region": result.get("region") or "", "creator": result.get("creator") or "",
            "scp": result.get("scp") or ""}
    if instance is None:
        return dict(base, instance="-", verdict="failed", action="",
                    reason="call failed: %s" % (result.get("error") or ""), code="")
    return dict(base, instance=instance["instance_id"], verdict=instance["verdict"],
                action=instance["action"], reason=instance.get("reason") or "",
                code="(none)" if instance.get("code") is None else instance["code"])


# --- charts (inline SVG) ---------------------------------------------------------------

def bars(counts, title, width=460, colour="#c0392b"):
    """A horizontal bar chart of the ``TOP`` largest ``counts`` ({label: n})."""
    items = counts.most_common(TOP) if isinstance(counts, Counter) else \
        sorted(counts.items(), key=lambda kv: -kv[1])[:TOP]
    if not items:
        return '<p class="empty">%s: none</p>' % esc(title)
    top = max(n for _, n in items) or 1
    label_w, bar_h, gap = 190, 18, 6
    height = len(items) * (bar_h + gap) + 10
    parts = ['<svg class="chart" role="img" aria-label="%s" width="%d" height="%d" '
             'viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg">' % (
                 esc(title), width, height, width, height)]
    for index, (label, n) in enumerate(items):
        y = index * (bar_h + gap) + 5
        length = max(1, round((width - label_w - 60) * n / top))
        label = "(empty)" if label == "" else str(label)
        # the end of a long name tells most (an ARN's role or user)
        shown = label if len(label) <= 26 else "\u2026" + label[-25:]
        parts.append('<text x="%d" y="%d" text-anchor="end" class="label">%s<title>%s'
                     '</title></text>' % (label_w - 6, y + 13, esc(shown), esc(label)))
        parts.append('<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>' % (
            label_w, y, length, bar_h, colour))
        parts.append('<text x="%d" y="%d" class="value">%d</text>' % (
            label_w + length + 5, y + 13, n))
    parts.append("</svg>")
    return "".join(parts)


def timeline(days, width=940, height=220):
    """Violations per day, stacked by what Broom would have done."""
    if not days:
        return '<p class="empty">No violations.</p>'
    labels = sorted({day for day, _ in days})
    actions = sorted({action for _, action in days})
    totals = {day: sum(days[(day, a)] for a in actions) for day in labels}
    top = max(totals.values()) or 1
    left, bottom, top_pad = 40, 40, 10
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    step = plot_w / len(labels)
    bar_w = max(2, min(40, step * 0.8))
    parts = ['<svg class="chart" role="img" aria-label="Violations per day" width="%d" '
             'height="%d" viewBox="0 0 %d %d" xmlns="http://www.w3.org/2000/svg">' % (
                 width, height, width, height),
             '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#999"/>' % (
                 left, top_pad + plot_h, width - 10, top_pad + plot_h),
             '<text x="%d" y="%d" text-anchor="end" class="value">%d</text>' % (
                 left - 4, top_pad + 10, top),
             '<text x="%d" y="%d" text-anchor="end" class="value">0</text>' % (
                 left - 4, top_pad + plot_h)]
    every = max(1, len(labels) // 12)
    for index, day in enumerate(labels):
        x = left + index * step + (step - bar_w) / 2
        y = top_pad + plot_h
        for action in actions:
            n = days.get((day, action), 0)
            if not n:
                continue
            h = plot_h * n / top
            y -= h
            parts.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s">'
                         '<title>%s: %d %s</title></rect>' % (
                             x, y, bar_w, h, COLOURS.get(action, "#555"), esc(day), n,
                             esc(evaluate.ACTIONS.get(action, action))))
        if index % every == 0:
            parts.append('<text x="%.1f" y="%d" text-anchor="middle" class="label">%s'
                         '</text>' % (x + bar_w / 2, top_pad + plot_h + 16, esc(day[5:])))
    parts.append("</svg>")
    legend = "".join('<span class="key"><i style="background:%s"></i>%s</span>' % (
        COLOURS.get(a, "#555"), esc(evaluate.ACTIONS.get(a, a))) for a in actions)
    return "".join(parts) + '<div class="legend">%s</div>' % legend


# --- the page --------------------------------------------------------------------------

STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
color:#222;background:#f6f7f9}
header{background:#1f2d3d;color:#fff;padding:16px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#cfd8e3}main{padding:16px 24px;max-width:1240px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:16px}
.card{background:#fff;border-radius:6px;padding:12px 16px;min-width:150px;
box-shadow:0 1px 2px rgba(0,0,0,.1)}.card b{display:block;font-size:26px}
.card.alert b{color:#c0392b}section{background:#fff;border-radius:6px;padding:12px 16px;
margin-bottom:16px;box-shadow:0 1px 2px rgba(0,0,0,.1)}h2{font-size:16px;margin:0 0 8px}
.grid{display:flex;flex-wrap:wrap;gap:16px}.grid>div{flex:1 1 460px}
.chart .label{font-size:12px;fill:#333}.chart .value{font-size:11px;fill:#555}
.legend .key{margin-right:14px;font-size:12px}.legend i{display:inline-block;width:10px;
height:10px;margin-right:4px}.empty{color:#777}
.filters{display:flex;flex-wrap:wrap;gap:8px;margin-bottom:8px;align-items:center}
.filters input,.filters select{padding:4px 6px}
table{border-collapse:collapse;width:100%;font-size:12px}th,td{text-align:left;
padding:4px 6px;border-bottom:1px solid #eee;vertical-align:top}th{background:#fafafa;
position:sticky;top:0}tr.violation td.verdict{color:#c0392b;font-weight:600}
pre{background:#f4f4f4;padding:8px;overflow:auto}#errors:empty{display:none}
#errors{color:#fff;background:#c0392b;padding:8px}
"""

# Filters: a row is shown when it contains the search text and matches every select.
# The URL's hash may preset them (#q=alice&verdict=violation): links to a view.
SCRIPT = """
(function () {
  var rows = Array.prototype.slice.call(document.querySelectorAll('#launches tbody tr'));
  var q = document.getElementById('q');
  var selects = Array.prototype.slice.call(document.querySelectorAll('select[data-field]'));
  var shown = document.getElementById('shown');
  function apply() {
    var text = q.value.toLowerCase(), count = 0;
    rows.forEach(function (tr) {
      var ok = !text || tr.textContent.toLowerCase().indexOf(text) >= 0;
      selects.forEach(function (s) {
        if (ok && s.value && tr.getAttribute('data-' + s.dataset.field) !== s.value) {
          ok = false;
        }
      });
      tr.hidden = !ok;
      if (ok) { count += 1; }
    });
    shown.textContent = String(count);
  }
  var preset = new URLSearchParams(location.hash.replace(/^#/, ''));
  if (preset.has('q')) { q.value = preset.get('q'); }
  selects.forEach(function (s) {
    if (preset.has(s.dataset.field)) { s.value = preset.get(s.dataset.field); }
    s.addEventListener('change', apply);
  });
  q.addEventListener('input', apply);
  apply();
  document.body.setAttribute('data-ready', 'yes');
})();
"""

# First in <head>: any error of the page's scripts is written into the page, where a
# person (and the browser test) sees it.
ERRORS = """
window.addEventListener('error', function (e) {
  var box = document.getElementById('errors');
  var text = (e.message || 'error') + ' (line ' + (e.lineno || '?') + ')';
  if (box) { box.textContent += text + '\\n'; } else { window.__errors = text; }
});
"""


def select(field, label, values):
    options = "".join('<option value="%s">%s</option>' % (esc(v), esc(v))
                      for v in sorted(values))
    return '<label>%s <select data-field="%s"><option value="">all</option>%s</select>' \
           '</label>' % (esc(label), esc(field), options)


def render(tally, rows, omitted, days, stats, skipped, policy, first, last, now):
    """The page, as one string. Pure."""
    s = tally.summary()
    violations = s["verdicts"].get(evaluate.VIOLATION, 0)
    cards = [
        ("launches", s["launches"], ""),
        ("instances", s["instances"], ""),
        ("violations", violations, "alert" if violations else ""),
        ("would terminate", s["actions"].get(evaluate.TERMINATE, 0), ""),
        ("report only", s["actions"].get(evaluate.REPORT_ONLY, 0), ""),
        ("exempt", s["actions"].get(evaluate.EXEMPT, 0), ""),
        ("held by the cap", s["actions"].get(evaluate.HELD, 0), ""),
        ("SCP refusals", s["scp"].get("deny", 0), ""),
        ("failed calls", s["failed_calls"], ""),
    ]
    card_html = "".join('<div class="card %s" data-count="%s"><b>%d</b>%s</div>' % (
        cls, esc(name), n, esc(name)) for name, n, cls in cards)
    period = "%s to %s" % (first.strftime("%Y-%m-%d %H:%M"), last.strftime(
        "%Y-%m-%d %H:%M UTC")) if first and last else "no launches"
    body = []
    for r in rows:
        body.append(
            '<tr class="%s" data-verdict="%s" data-action="%s" data-account="%s" '
            'data-scp="%s"><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>'
            '<td>%s</td><td class="verdict">%s</td><td>%s</td><td>%s</td></tr>' % (
                esc(r["verdict"]), esc(r["verdict"]), esc(r["action"]), esc(r["account"]),
                esc(r["scp"]), esc(r["time"]), esc(r["account"]), esc(r["region"]),
                esc(r["creator"]), esc(r["scp"]), esc(r["instance"]), esc(r["verdict"]),
                esc(r["code"]), esc(evaluate.ACTIONS.get(r["action"], r["action"])
                                    + (" (%s)" % r["reason"] if r["reason"] else ""))))
    note = ('<p class="empty">The table lists the first %d instances; %d more are counted '
            'above but not listed.</p>' % (len(rows), omitted)) if omitted else ""
    snippet = output.exemptions_snippet(tally.blocked)
    footer = output.footer(stats, skipped)
    filters = "".join((
        '<label>Search <input id="q" type="search" placeholder="creator, id, code..."></label>',
        select("verdict", "Verdict", {r["verdict"] for r in rows}),
        select("action", "Action", {r["action"] for r in rows if r["action"]}),
        select("account", "Account", {r["account"] for r in rows}),
        select("scp", "SCP", {r["scp"] for r in rows if r["scp"]}),
        '<span><b id="shown">%d</b> of %d rows shown</span>' % (len(rows), len(rows))))
    return """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="%(csp)s">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Broom whatif: %(period)s</title>
<script>%(errors)s</script>
<style>%(style)s</style></head>
<body data-ready="no">
<header><h1>What Broom would have done</h1>
<p>Policy %(policy)s &middot; launches %(period)s &middot; made %(now)s</p></header>
<main>
<div id="errors"></div>
<div class="cards" id="summary">%(cards)s</div>
<section><h2>Violations per day, by what Broom would have done</h2>%(timeline)s</section>
<section class="grid">
<div><h2>Violations per account</h2>%(accounts)s</div>
<div><h2>Violations per principal</h2>%(creators)s</div>
<div><h2>Violations per Code tag</h2>%(codes)s</div>
<div><h2>SCP refusals per principal</h2>%(scp)s</div>
</section>
<section><h2>Suggested exemptions</h2>%(snippet)s</section>
<section><h2>Launches</h2><div class="filters">%(filters)s</div>%(note)s
<table id="launches"><thead><tr><th>Time</th><th>Account</th><th>Region</th>
<th>Creator</th><th>SCP</th><th>Instance</th><th>Verdict</th><th>Code</th>
<th>Action (reason)</th></tr></thead><tbody>
%(rows)s
</tbody></table></section>
<p class="empty">%(footer)s</p>
</main>
<script type="application/json" id="summary-data">%(summary)s</script>
<script>%(script)s</script>
</body></html>
""" % {
        "csp": CSP, "errors": ERRORS, "style": STYLE, "script": SCRIPT,
        "policy": esc(policy or "(default)"), "period": esc(period),
        "now": esc(now.strftime("%Y-%m-%d %H:%M UTC")), "cards": card_html,
        "timeline": timeline(days),
        "accounts": bars(Counter(s["violations_per_account"]), "Violations per account"),
        "creators": bars(Counter(s["violations_per_creator"]), "Violations per principal"),
        "codes": bars(Counter(s["violations_per_code"]), "Violations per Code tag",
                      colour="#e67e22"),
        "scp": bars(Counter(s["scp_refusals_per_principal"]), "SCP refusals",
                    colour="#2c3e50"),
        "snippet": "<pre>%s</pre>" % esc(snippet) if snippet else
                   '<p class="empty">None: nobody was blocked.</p>',
        "filters": filters, "note": note, "rows": "\n".join(body), "footer": esc(footer),
        # JSON inside <script>: "<" escaped, so no value can close the element.
        "summary": json.dumps(s).replace("<", "\\u003c").replace(">", "\\u003e")
                   .replace("&", "\\u0026"),
    }
