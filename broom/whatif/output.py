"""What ``broom whatif`` prints: a table row per launch as it is judged, then the
summary and the suggested exemptions; or, with ``--json``, one JSON document streamed
on stdout. Only counters are kept, never the launches themselves.

Every value read from a record (creator names, codes, ids) is untrusted: the text
output passes it through ``c7n_broom.text.readable`` (one line, no markup); JSON
carries it as it is, escaped by JSON itself.
"""
import json
from collections import Counter

from broom.whatif import evaluate
from c7n_broom import principals
from c7n_broom.text import readable

TOP = 10


def show(value, limit=60):
    return readable("-" if value in (None, "") else str(value), limit)


class Tally:
    """Counters over the judged launches, for the summary and suggested exemptions."""

    def __init__(self):
        self.launches = self.instances = self.failed_calls = 0
        self.verdicts = Counter()
        self.actions = Counter()
        self.by_account = Counter()
        self.by_creator = Counter()
        self.by_code = Counter()
        self.scp_denied = Counter()
        self.scp_launches = Counter()
        self.hours = Counter()
        self.blocked = Counter()  # principal -> launches the SCP refuses or Broom terminates

    def add(self, result):
        self.launches += 1
        if result.get("error"):
            self.failed_calls += 1
        principal = result.get("principal") or result.get("creator")
        if result["scp"] == "deny":
            self.scp_launches["deny"] += 1
            self.scp_denied[principal] += 1
        else:
            self.scp_launches["allow"] += 1
        violations = [i for i in result["instances"] if i["verdict"] == evaluate.VIOLATION]
        for instance in result["instances"]:
            self.instances += 1
            self.verdicts[instance["verdict"]] += 1
            self.actions[instance["action"]] += 1
        for instance in violations:
            self.by_account[result["account"]] += 1
            self.by_creator[result["creator"]] += 1
            self.by_code["(none)" if instance["code"] is None else instance["code"]] += 1
        if violations:
            self.hours[evaluate.hour_of(result)] += 1
        if result["scp"] == "deny" or any(i["action"] == evaluate.TERMINATE
                                          for i in violations):
            self.blocked[principal] += 1

    def summary(self):
        return {
            "launches": self.launches,
            "failed_calls": self.failed_calls,
            "instances": self.instances,
            "verdicts": dict(self.verdicts),
            "actions": dict(self.actions),
            "scp": dict(self.scp_launches),
            "violations_per_account": dict(self.by_account.most_common()),
            "violations_per_creator": dict(self.by_creator.most_common()),
            "violations_per_code": dict(self.by_code.most_common()),
            "scp_refusals_per_principal": dict(self.scp_denied.most_common()),
            "busiest_hours": dict(self.hours.most_common(TOP)),
        }


def anomalies(stats):
    """What the input should not hold: records with the same eventID and different
    content (the first one read is the one used)."""
    if not stats.get("conflicting_records"):
        return {}
    return {"conflicting_records": stats["conflicting_records"],
            "conflicting_event_ids": stats["conflicting_event_ids"]}


def suggested_exemptions(blocked, limit=TOP):
    """(pattern, launches, note) for the principals blocked most: what could go in
    ``exempt-principals``, each checked against the grammar; a principal the grammar
    cannot name (root, a federated user) gets a note instead of a pattern."""
    found = []
    for principal, count in blocked.most_common():
        if len(found) == limit:
            break
        if evaluate.service_linked(principal):
            continue  # an AWS service for a fleet: fix the fleet (reports say how)
        try:
            principals.parse(principal)
        except ValueError as e:
            found.append((None, count, "%s, not exemptable as it is: %s" % (
                show(principal, 200), show(str(e), 300))))
            continue
        found.append((principal, count, ""))
    return found


def exemptions_snippet(blocked):
    rows = suggested_exemptions(blocked)
    if not rows:
        return ""
    lines = ["# Suggested exemptions: the principals whose launches the SCP would refuse or",
             "# Broom would terminate most. Review each before use (an exemption lets every",
             "# launch of that principal through); broom whatif never applies them.",
             "exempt-principals:"]
    for pattern, count, unnamed in rows:
        if pattern:
            lines.append("  - %s  # %d launch(es)" % (json.dumps(pattern), count))
        else:
            lines.append("  # %d launch(es) by %s" % (count, unnamed))
    return "\n".join(lines)


class TextOutput:
    """The per-launch table, then the summary."""

    def __init__(self, echo):
        self.echo = echo
        self.tally = Tally()
        self.header = False

    def launch(self, result):
        self.tally.add(result)
        if not self.header:
            self.echo("%-20s %-12s %-14s %-24s %-5s %-19s %-10s %s" % (
                "TIME", "ACCOUNT", "REGION", "CREATOR", "SCP", "INSTANCE", "VERDICT",
                "ACTION (REASON)"))
            self.header = True
        prefix = "%-20s %-12s %-14s %-24s %-5s" % (
            show(result["event_time"], 20), show(result["account"], 12),
            show(result["region"], 14), show(result["creator"], 24), result["scp"])
        if result.get("error"):
            self.echo("%s %-19s %-10s %s" % (prefix, "-", "failed", "call failed: %s" % show(
                result["error"], 120)))
            return
        for instance in result["instances"]:
            what = evaluate.ACTIONS[instance["action"]]
            self.echo("%s %-19s %-10s %s (%s)" % (
                prefix, instance["instance_id"], instance["verdict"], what,
                show(instance["reason"], 120)))

    def finish(self, stats, skipped):
        s, echo = self.tally.summary(), self.echo
        echo("")
        echo("%d launch(es) (%d failed call(s)), %d instance(s): %d compliant, %d violation(s)"
             % (s["launches"], s["failed_calls"], s["instances"],
                s["verdicts"].get(evaluate.COMPLIANT, 0),
                s["verdicts"].get(evaluate.VIOLATION, 0)))
        echo("Broom would have: " + (", ".join(
            "%s %d" % (evaluate.ACTIONS[a], n) for a, n in sorted(s["actions"].items())
            if a != evaluate.NONE) or "done nothing"))
        echo("The SCP would have refused %d launch(es) and allowed %d." % (
            s["scp"].get("deny", 0), s["scp"].get("allow", 0)))
        found = anomalies(stats)
        if found:
            echo("Anomaly: %d record(s) have the eventID of another record but not its "
                 "content (the trail was altered, or two sources disagree; the first read "
                 "was used): %s" % (found["conflicting_records"], ", ".join(
                     show(i, 40) for i in found["conflicting_event_ids"])))
        for title, counts in (("Violations per account", s["violations_per_account"]),
                              ("Violations per creator", s["violations_per_creator"]),
                              ("Violations per code", s["violations_per_code"]),
                              ("SCP refusals per principal", s["scp_refusals_per_principal"]),
                              ("Busiest hours (launches with violations, UTC)",
                               s["busiest_hours"])):
            if counts:
                echo("")
                echo(title + ":")
                for name, n in list(counts.items())[:TOP]:
                    echo("  %6d  %s" % (n, show(name, 120)))
        snippet = exemptions_snippet(self.tally.blocked)
        if snippet:
            echo("")
            echo(snippet)
        echo("")
        echo(footer(stats, skipped))


def footer(stats, skipped):
    line = "Read %d file(s), %d record(s); %d selected" % (
        stats["files"], stats["records"], stats["selected"])
    if stats.get("late"):
        line += "; %d arrived later than the reorder window" % stats["late"]
    if stats.get("repeats"):
        line += "; %d repeated launch record(s) counted once" % stats["repeats"]
    if stats.get("joined"):
        line += ("; %d more record(s) of fleet launches (CreateFleet and EC2 Fleet's "
                 "RunInstances) judged with them" % stats["joined"])
    if stats.get("later_fleets"):
        line += ("; %d CreateFleet of type request/maintain (they launch later, by "
                 "RunInstances)" % stats["later_fleets"])
    if skipped:
        line += "; %d input(s) skipped (see above)" % len(skipped)
    return line


class JsonOutput:
    """One JSON document streamed on stdout: ``{"launches": [...], "summary": {...},
    "skipped": [...], "suggested_exemptions": [...]}``."""

    def __init__(self, write):
        self.write = write
        self.tally = Tally()
        self.count = 0
        self.write('{"launches": [')

    def launch(self, result):
        self.tally.add(result)
        self.write(("," if self.count else "") + "\n  " + json.dumps(result))
        self.count += 1

    def finish(self, stats, skipped):
        self.write("\n],\n")
        rest = {
            "summary": dict(self.tally.summary(), anomalies=anomalies(stats)),
            "suggested_exemptions": [
                {"pattern": p, "launches": n, "principal": u or p}
                for p, n, u in suggested_exemptions(self.tally.blocked)],
            "stats": stats,
            "skipped": [{"source": s.label, "why": s.why} for s in skipped],
        }
        self.write(json.dumps(rest, indent=1)[1:].lstrip("\n") + "\n")
