"""The ``allowed-codes`` filter: EC2 instances whose Code tag is missing or not allowed."""
import logging
import time

from botocore.exceptions import ClientError
from c7n.exceptions import PolicyValidationError
from c7n.filters.core import ValueFilter
from c7n.resolver import ValuesFrom
from c7n.utils import chunks, local_session, type_schema

from c7n_broom import codes, decisions, events
from c7n_broom.lambda_check import check_lambda_packaging, is_lambda_mode
from c7n_broom.validation import check_schema, where

log = logging.getLogger("custodian.broom.filters")

ANNOTATION = codes.ANNOTATION
DEFAULT_KEY = "tag:Code"
GRACE_INTERVAL = 2  # seconds between tag re-reads during grace-seconds


class AllowedCodes(ValueFilter):
    """Match EC2 instances that break the Code tag rule.

    An instance violates when its tag is missing, empty or whitespace only, or holds
    a value that is not one of the allowed codes. Each match is annotated under
    ``c7n:broom-violation`` with the reason (``missing``, ``empty``, ``invalid``) and
    the value seen; ``creator-report`` puts that in its message.

    The allowed codes come from ``codes`` (a list) or ``value_from`` (any of
    Custodian's value sources). ``codes-override`` replaces ``codes`` when it is set:
    point it at a c7n-org variable (``"{broom_codes}"``) so accounts can carry their
    own codes in ``accounts.yml`` while the policy keeps the defaults; a placeholder
    left unexpanded means "not set", and a var's value holding braces is refused
    (``broom_codes: "{LOL},{GGG}"``). Matching is exact unless ``ignore-case`` is true.

    ``ignore-case`` ignores simple case only, character by character: ``lol`` and
    ``Lol`` match ``LOL``, and a letter matches its other case only where the two map
    to each other one to one (``é``/``É``). No Unicode folding applies, and a
    non-ASCII character never matches an ASCII one: the Kelvin sign is not ``K``,
    ``ß`` is not ``SS``, dotless ``ı`` is not ``I``, the ligature ``ﬀ`` is not
    ``FF``, and fullwidth letters are not their ASCII lookalikes.

    In cloudtrail mode a tag that DescribeInstances does not show yet is looked up in
    the triggering event's ``tagSpecificationSet`` and with DescribeTags before an
    instance is called a violator. ``grace-seconds`` (event modes only) keeps
    re-reading the tag of instances that have none, every 2 seconds up to that long,
    for tools that tag in a separate CreateTags call after launch.

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
    permissions = ("ec2:DescribeInstances", "ec2:DescribeTags")
    annotate = False
    clock = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    def validate(self):
        name = self._where()
        if "codes" in self.data and "value_from" in self.data:
            raise PolicyValidationError(
                "%s: set either 'codes' or 'value_from', not both" % name)
        if "codes" not in self.data and "value_from" not in self.data:
            raise PolicyValidationError(
                "%s: no allowed codes: add 'codes: [...]' or 'value_from'" % name)
        if "codes" in self.data:
            self._parse("codes", self.data["codes"], allow_string=False)
        override = self.data.get("codes-override")
        problem = codes.var_error("codes-override", override, codes.policy_vars(self))
        if problem:
            raise PolicyValidationError("%s: %s" % (name, problem))
        if not codes.is_unset(override):
            self._parse("codes-override", override)
        check_schema(self)  # the rest, with types checked
        key = self.data.get("key", DEFAULT_KEY)
        if not key.strip() or key.strip() == "tag:":
            raise PolicyValidationError("%s: 'key' must name a field, e.g. tag:Code" % name)
        self._check_grace(name)
        check_lambda_packaging(self.manager, self.type)
        return self

    def _where(self):
        return where(self)

    def _check_grace(self, name):
        """The grace period must leave the Lambda time to act after waiting."""
        grace = self.data.get("grace-seconds", 0)
        mode = (self.manager.data.get("mode") or {}) if self.manager else {}
        timeout = mode.get("timeout", 900) if is_lambda_mode(mode) else None
        if timeout is not None and grace * 2 > timeout:
            raise PolicyValidationError(
                "%s: 'grace-seconds' (%s) must be at most half the mode's timeout (%s s), "
                "or the function times out while waiting and acts on nothing" % (
                    name, grace, timeout))

    def _parse(self, option, value, allow_string=True):
        if isinstance(value, str) and not allow_string:
            raise PolicyValidationError(
                "%s: '%s' must be a YAML list, e.g. [LOL, GGG]" % (self._where(), option))
        try:
            return codes.parse_codes(value)
        except ValueError as e:
            raise PolicyValidationError("%s: '%s': %s" % (self._where(), option, e))

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

    def process(self, resources, event=None):
        allowed = self.allowed_codes()
        record = events.cloudtrail_record(event)
        requested = events.request_tags(record) if record else {}
        suspects = [r for r in resources if self.violation(r, requested)]
        missing = [r for r in suspects if self.violation(r, requested).reason == codes.MISSING]
        late = self._late_tags(missing) if self.tag_key else {}
        grace = self.data.get("grace-seconds", 0)
        if grace and record and self.tag_key:
            self._wait_for_tags(missing, late, grace)
        matched = []
        for r in suspects:
            found = dict(requested)
            found.update(late.get(r["InstanceId"], {}))
            verdict = self.violation(r, found)
            if verdict is None:
                log.info("instance %s: %s tag found after launch, compliant",
                         r["InstanceId"], self.tag_key)
                continue
            annotation = dict(verdict.as_dict(), key=self.data.get("key", DEFAULT_KEY),
                              allowed=list(allowed))
            r[ANNOTATION] = annotation
            matched.append(r)
        return matched

    def _wait_for_tags(self, missing, found, grace):
        """Re-read the tag of still-untagged instances until ``grace`` seconds pass.

        Tools that tag in a separate CreateTags call just after RunInstances race
        the check; only live instances with no tag at all wait, so compliant
        launches, wrong values and instances already terminated (a repeated event)
        cost nothing.
        """
        deadline = self.clock() + grace
        waiting = [r for r in missing if r["InstanceId"] not in found
                   and r.get("State", {}).get("Name") in decisions.LIVE_STATES]
        while waiting and self.clock() < deadline:
            self.sleep(min(GRACE_INTERVAL, max(0.0, deadline - self.clock())))
            found.update(self._late_tags(waiting))
            waiting = [r for r in waiting if r["InstanceId"] not in found]
        if waiting:
            log.info("%d instance(s) still without a %s tag after %ss", len(waiting),
                     self.tag_key, grace)

    def _late_tags(self, resources):
        """Read tags DescribeInstances may not show yet, by resource id (DescribeTags)."""
        if not resources:
            return {}
        if getattr(self, "_ec2", None) is None:  # one client for every re-read
            self._ec2 = local_session(self.manager.session_factory).client("ec2")
        client = self._ec2
        found = {}
        for batch in chunks([r["InstanceId"] for r in resources], 100):
            try:
                pages = self.manager.retry(
                    client.describe_tags,
                    Filters=[{"Name": "resource-id", "Values": batch},
                             {"Name": "key", "Values": [self.tag_key]}])
            except ClientError as e:
                if e.response["Error"]["Code"] in ("UnauthorizedOperation", "AccessDenied"):
                    log.warning("cannot re-read tags (%s): add ec2:DescribeTags to the "
                                "execution role", e.response["Error"]["Code"])
                    return found
                raise
            for tag in pages.get("Tags", []):
                found.setdefault(tag["ResourceId"], {})[tag["Key"]] = tag.get("Value", "")
        return found
