"""The ``allowed-codes`` filter: EC2 instances whose Code tag is missing or not allowed."""
import logging
import time
from datetime import datetime, timezone

from c7n.exceptions import PolicyValidationError
from c7n.filters.core import ValueFilter
from c7n.resolver import ValuesFrom
from c7n.utils import local_session, type_schema

from c7n_broom import codes, instances, launch, metrics, quarantine, recheck
from c7n_broom.lambda_check import check_lambda_packaging
from c7n_broom.validation import (
    check_grace_seconds,
    check_schedule,
    check_schema,
    check_var,
    where,
)

log = logging.getLogger("custodian.broom.filters")

DEFAULT_KEY = "tag:Code"


class AllowedCodes(ValueFilter):
    """Match EC2 instances that break the Code tag rule.

    An instance violates when its tag is missing, empty or whitespace only, or holds
    a value that is not one of the allowed codes. Each match is annotated under
    ``c7n:broom-violation`` with the reason (``missing``, ``empty``, ``invalid``) and
    the value seen; ``creator-report`` puts that in its message.

    The allowed codes come from ``codes`` (a list) or ``value_from`` (any of
    Custodian's value sources). ``codes-override`` replaces ``codes`` when set: point
    it at a c7n-org var (``"{broom_codes}"``) so accounts carry their own codes in
    ``accounts.yml``; left unexpanded it means "not set", and a var's value holding
    braces (``broom_codes: "{LOL},{GGG}"``) is refused. Matching is exact unless
    ``ignore-case`` is true, which ignores simple case only, letter by letter
    (``lol`` matches ``LOL``, ``é`` matches ``É``; the Kelvin sign is not ``K``, ``ß``
    is not ``SS``: see ``codes.same_ignoring_case``).

    In cloudtrail mode a tag that DescribeInstances does not show yet is looked up with
    DescribeTags before an instance is called a violator. The triggering event's
    ``tagSpecificationSet`` stands in only for an instance EC2 shows no tags at all
    for yet (neither DescribeInstances nor DescribeTags): once EC2 shows any of its
    tags, they are the truth, so a Code requested at launch and deleted right after
    is missing. Without an event (pull or periodic mode) only
    instances launched in the last few minutes have their tags re-read: for older
    ones DescribeInstances is authoritative. ``grace-seconds`` (event modes only) keeps
    re-reading the tag of instances that have none, after widening pauses (2, 4, 8
    seconds...) and once more when it ends,
    for tools that tag in a separate CreateTags call after launch; an event already
    older than that (a retried or replayed one) is not waited for.

    :example:

    .. code-block:: yaml

        policies:
          - name: ec2-require-code-tag
            resource: aws.ec2
            filters:
              - type: allowed-codes
                codes: [LOL, GGG, BRB, YLO]
                codes-override: "{broom_codes}"
                ignore-case: false
                grace-seconds: 10
    """

    schema = type_schema(
        "allowed-codes",
        key={"type": "string"},
        codes={"type": "array"},
        value_from={"$ref": "#/definitions/filters_common/value_from"},
        **{
            "codes-override": {"oneOf": [{"type": "string"}, {"type": "array"}]},
            "ignore-case": {"type": "boolean"},
            "grace-seconds": {"type": "integer", "minimum": 0, "maximum": 300},
        },
    )
    schema_alias = False
    # GetItem: a re-check reads the hold it names from the state table
    permissions = ("ec2:DescribeInstances", "ec2:DescribeTags", "dynamodb:GetItem")
    annotate = False
    clock = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)
    now = staticmethod(lambda: datetime.now(timezone.utc))

    def validate(self):
        name = where(self)
        if "codes" in self.data and "value_from" in self.data:
            raise PolicyValidationError(
                "%s: set either 'codes' or 'value_from', not both" % name)
        if "codes" not in self.data and "value_from" not in self.data:
            raise PolicyValidationError(
                "%s: no allowed codes: add 'codes: [...]' or 'value_from'" % name)
        if "codes" in self.data:
            self._parse("codes", self.data["codes"], allow_string=False)
        override = self.data.get("codes-override")
        check_var(self, "codes-override", override)
        if not codes.is_unset(override):
            self._parse("codes-override", override)
        check_schema(self)  # the rest, with types checked
        key = self.data.get("key", DEFAULT_KEY)
        if not key.strip() or key.strip() == "tag:":
            raise PolicyValidationError("%s: 'key' must name a field, e.g. tag:Code" % name)
        check_grace_seconds(self)
        check_schedule(self)  # a periodic policy's schedule var: unset means hourly
        check_lambda_packaging(self.manager, self.type)
        return self

    def _parse(self, option, value, allow_string=True):
        if isinstance(value, str) and not allow_string:
            raise PolicyValidationError(
                "%s: '%s' must be a YAML list, e.g. [LOL, GGG]" % (where(self), option))
        try:
            return codes.parse_codes(value)
        except ValueError as e:
            raise PolicyValidationError("%s: '%s': %s" % (where(self), option, e))

    def allowed_codes(self):
        """The allowed codes this policy enforces, resolved once."""
        if getattr(self, "_allowed", None) is None:
            override = self.data.get("codes-override")
            if not codes.is_unset(override):
                allowed = self._parse("codes-override", override)
            elif "value_from" in self.data:
                values = ValuesFrom(self.data["value_from"], self.manager).get_values()
                allowed = self._parse("value_from", sorted(values) if isinstance(
                    values, (set, frozenset)) else values)
            else:
                allowed = self._parse("codes", self.data["codes"])
            self._allowed = allowed
        return self._allowed

    @property
    def tag_key(self):
        key = self.data.get("key", DEFAULT_KEY)
        return key.split(":", 1)[1] if key.startswith("tag:") else None

    def violation(self, resource, extra_tags=None):
        key = self.data.get("key", DEFAULT_KEY)
        value = self.get_resource_value(key, resource)
        if value is None and extra_tags and self.tag_key in extra_tags:
            value = extra_tags[self.tag_key]
        return codes.classify(value, self.allowed_codes(), self.data.get("ignore-case", False))

    def request_stand_in(self, resources, record):
        """{instance id: tags} standing in for what DescribeInstances does not show:
        the request's tags for an instance EC2 shows no tags at all for (DescribeTags
        included), or the tags DescribeTags shows when only it does."""
        requested = dict(record.request_tags)
        bare = [r["InstanceId"] for r in resources if not r.get("Tags")]
        if not requested or not bare or self.tag_key is None:
            return {}
        client = local_session(self.manager.session_factory).client("ec2")
        shown = instances.late_tags(self.manager, client, bare, None)
        for instance_id in bare:
            if instance_id in shown:
                log.info("instance %s: EC2 shows its tags, the request's are not used",
                         instance_id)
        return {i: shown.get(i, requested) for i in bare}

    def process(self, resources, event=None):
        metrics.count(self.manager.data.get("name", ""), metrics.JUDGED, len(resources))
        allowed = self.allowed_codes()
        if launch.of(event).is_recheck:  # only a hold Broom recorded, judged by its record
            hold = recheck.verified(recheck.policy_table(self.manager), event)
            if hold is None:
                return []
            resources = recheck.held_resources(hold, resources)
            launch.replace_record(event, hold.record)
        record = launch.of(event)
        stand_in = self.request_stand_in(resources, record)
        verdicts = [(r, self.violation(r, stand_in.get(r["InstanceId"]))) for r in resources]
        suspects = [(r, verdict) for r, verdict in verdicts if verdict]
        missing = [r for r, verdict in suspects if verdict.reason == codes.MISSING]
        if not record.has_record:  # no event: DescribeInstances is authoritative for old ones
            now = self.now()
            missing = [r for r in missing if instances.just_launched(r, now)]
        late = {}
        if missing and self.tag_key:
            client = local_session(self.manager.session_factory).client("ec2")
            grace = self.data.get("grace-seconds", 0) if record.has_record else 0
            age = record.age_seconds() if record.has_record else None
            if grace and age is not None and age > grace:
                # an old event (a retry, a replayed log): a late tag had its time
                log.info("event is %ds old, past grace-seconds: no wait", age)
                grace = 0
            late = instances.wait_for_tags(self.manager, client, self.tag_key, missing,
                                           grace, clock=self.clock, sleep=self.sleep)
        matched = []
        for r, verdict in suspects:
            if r["InstanceId"] in late:  # a tag shown only now: judge it again
                verdict = self.violation(r, late[r["InstanceId"]])
            if verdict is None:
                log.info("instance %s: %s tag found after launch, compliant",
                         r["InstanceId"], self.tag_key)
                continue
            r[codes.ANNOTATION] = dict(
                verdict.as_dict(), key=self.data.get("key", DEFAULT_KEY), allowed=list(allowed))
            matched.append(r)
        if not record.has_record:  # a sweep keeps the quarantined it releases, to report them once
            chosen = {r["InstanceId"] for r in matched}
            matched += quarantine.released(
                self, [r for r in resources if r["InstanceId"] not in chosen])
        return matched
