"""``broom preflight``: every account's vars in every policy, checked before a rollout.

``c7n-org run`` fills each account's ``vars`` into the policies and only then calls
``validate()``, in the account, at deploy time: a bad var (``broom_codes: []``, an
unknown enforcement, a topic that is not an ARN) fails there, account by account,
and ``c7n-org run`` still exits 0 when a policy fails to load. ``c7n-org validate``
checks the policies with no account's vars, and ``--per-account`` refuses Broom's
optional vars (``{broom_codes}`` left unset keeps the policy's default).

This module does what ``c7n-org run`` does up to the deploy, with c7n-org's own
functions: the accounts file is read and checked against c7n-org's schema,
normalised by ``accounts_iterator`` (top-level ``vars`` merged under each account's),
filtered like ``-a``, and each (account, region) gets a c7n ``Config`` with its
``account_id`` and ``region``; each policy is built from the file's data, expanded with
``Policy.get_variables`` / ``expand_variables`` (built-ins such as ``account_id`` and
``region`` win over vars) and validated with ``Policy.validate()``, which runs
Broom's checks of codes, enforcement, topics and braces. After expansion the
policy is also held to c7n's JSON schema, which ``c7n-org run`` skips.

No AWS calls: ``regions: [all]`` needs one, so it is refused here.
"""
import copy
import re
from dataclasses import dataclass, field

import yaml

from broom import policyfile, varnames
from broom.policyfile import one_line

#: Options of the mode that stay unexpanded on purpose (c7n fills them at run time).
RUNTIME_OPTIONS = ("member-role",)
#: Broom's element messages start "policy:NAME filter:TYPE: ..." (validation.where).
ELEMENT_MESSAGE = re.compile(r"^policy:(?P<policy>\S+) (?P<element>(?:filter|action):\S+?):? ")


class PreflightError(ValueError):
    """The accounts file or a policy file cannot be read at all (one line)."""


@dataclass
class Result:
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    accounts: int = 0
    policies: int = 0
    regions: int = 0
    account_regions: int = 0
    checks: int = 0

    def summary(self):
        def count(n, word, words=None):
            return "%d %s" % (n, word if n == 1 else words or word + "s")
        return "checked %s in each of %s (%s, %s): %s" % (
            count(self.policies, "policy", "policies"),
            count(self.account_regions, "account-region"), count(self.accounts, "account"),
            count(self.regions, "region"), count(self.checks, "deployment"))


def load_accounts(path, accounts=(), regions=()):
    """The accounts of a c7n-org config, as ``c7n-org run`` sees them: schema-checked,
    normalised (vars merged), filtered by name or id; each with its regions."""
    import jsonschema
    from c7n_org.cli import CONFIG_SCHEMA, accounts_iterator, comma_expand, filter_accounts

    try:
        with open(path, "rb") as f:
            config = yaml.safe_load(f.read())
    except (OSError, yaml.YAMLError) as e:
        raise PreflightError("%s: not a readable accounts file (%s)" % (path, one_line(e)))
    if not isinstance(config, dict):
        raise PreflightError("%s: not a c7n-org accounts file (no 'accounts:')" % path)
    for where, item, known in keyed_items(config, CONFIG_SCHEMA):
        found = varnames.unknown_keys(item, known)
        if found:
            raise PreflightError("%s: %s: %s" % (path, where, found[0][1]))
    try:
        jsonschema.validate(config, CONFIG_SCHEMA)
    except jsonschema.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "top level"
        raise PreflightError("%s: %s: %s" % (path, where, one_line(e.message)))
    config["accounts"] = list(accounts_iterator(config))
    filter_accounts(config, (), accounts)
    selected = [a for a in config["accounts"] if a.get("provider") == "aws"]
    if accounts and not selected:
        raise PreflightError("%s: no account named or numbered %s" % (
            path, ", ".join(comma_expand(accounts))))
    result = []
    for account in selected:
        wanted = comma_expand(regions or account.get("regions") or ())
        # c7n-org's resolve_regions: no regions means these two; "all" asks AWS.
        result.append((account, wanted or ["us-east-1", "us-west-2"]))
    return result


def keyed_items(config, schema):
    """(where, mapping, known keys) for the top level of an accounts file and each of
    its AWS accounts: c7n-org accepts any key in an account, so a misspelt one
    (``acount_id``, ``var:``) would otherwise be ignored or reported as "not valid
    under any of the given schemas"."""
    yield "top level", config, set(schema["properties"])
    known = set(schema["definitions"]["account"]["properties"])
    for index, account in enumerate(config.get("accounts") or ()):
        if isinstance(account, dict):
            name = account.get("name") or account.get("account_id")
            yield "accounts[%d]%s" % (index, " (%s)" % name if name else ""), account, known


def load_policy_file(path):
    """The file's policies data, after the file-level checks ``custodian validate``
    makes (schema, each element's validate() with vars unexpanded)."""
    try:
        policyfile.load_checked(path)
    except policyfile.PolicyFileError as e:
        raise PreflightError(str(e))
    with open(path) as f:
        return yaml.safe_load(f)


def label(account, region):
    return "%s (%s) %s" % (account.get("name", account["account_id"]),
                          account["account_id"], region)


def element_line(policy_name, message):
    """``POLICY: filter:TYPE 'option': what`` from a validation message."""
    message = one_line(message)
    match = ELEMENT_MESSAGE.match(message)
    if match:
        return "%s: %s %s" % (match["policy"], match["element"], message[match.end():])
    return "%s: %s" % (policy_name, message)


def unexpanded(data, path=""):
    """(path, placeholder) for each ``{name}`` left in the policy outside its filters
    and actions (whose Broom elements check their own vars) and the runtime options."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            if not path and key in ("filters", "actions"):
                continue
            if path == "mode" and key in RUNTIME_OPTIONS:
                continue
            found += unexpanded(value, "%s.%s" % (path, key) if path else str(key))
    elif isinstance(data, list):
        for index, item in enumerate(data):
            found += unexpanded(item, "%s[%d]" % (path, index))
    elif isinstance(data, str):
        found += [(path, name) for name in varnames.PLACEHOLDER.findall(data)]
    return found


def validation_errors(policy):
    """The errors of ``Policy.validate()``, each of its steps run on its own so that
    every bad element is reported, not only the first."""
    def mode():
        m = policy.get_execution_mode()
        if m is None:
            raise ValueError("invalid execution mode %r" % (policy.data.get("mode"),))
        m.validate()

    steps = [policy.conditions.validate, mode, policy.validate_policy_start_stop,
             policy.resource_manager.validate]
    steps += [f.validate for f in policy.resource_manager.filters]
    steps += [a.validate for a in policy.resource_manager.actions]
    errors = []
    for step in steps:
        try:
            step()
        except Exception as e:  # noqa: BLE001 - any failure here stops the deploy
            errors.append(e)
    return errors


def check(account, region, policies_data, schema_check):
    """The problems of one (account, region): each a line without the label."""
    from c7n.config import Config
    from c7n.policy import PolicyCollection

    config = Config.empty(region=region, account_id=account["account_id"], dryrun=True,
                          output_dir="null://", cache="", cache_period=0,
                          log_group=None, profile=None, external_id=None)
    problems = []
    collection = PolicyCollection.from_data(copy.deepcopy(policies_data), config)
    for policy in collection:
        name = policy.name
        try:
            policy.conditions.env_vars["account"] = account
            # As c7n-org's run_account; a copy, as each of its processes gets one.
            policy.expand_variables(policy.get_variables(copy.deepcopy(account.get("vars",
                                                                                 {}))))
        except Exception as e:  # noqa: BLE001 - any failure here stops the deploy
            problems.append(element_line(name, e))
            continue
        found = [element_line(name, e) for e in validation_errors(policy)]
        problems += found
        if found:
            continue
        for path, var in unexpanded(policy.data):
            problems.append("%s: %s holds {%s}, which neither the account's vars nor "
                            "c7n fill" % (name, path, var))
        error = schema_check(policy.data)
        if error:
            problems.append("%s: after its vars are filled: %s" % (name, error))
    return problems


def schema_checker():
    """A function: expanded policy data -> c7n's schema error in one line, or None."""
    from c7n import schema
    from c7n.resources import load_resources

    load_resources(("aws.ec2",))
    cache = {}

    def check_data(data):
        resource = data.get("resource", "")
        key = resource
        if key not in cache:
            load_resources((resource,))
            cache[key] = schema.generate((resource,))
        errors = schema.validate({"policies": [data]}, cache[key])
        return one_line(errors[0]) if errors else None
    return check_data


def bare_name_exemptions(path, data):
    """A warning per ``exempt-principals`` pattern that is a bare role name: it
    exempts a role of that name at any path in any account, which anyone allowed
    ``iam:CreateRole`` can create (unless ``broom scp``'s SCP is attached)."""
    from c7n_broom import principals

    warnings = []
    for policy in data.get("policies") or ():
        for action in (policy or {}).get("actions") or ():
            if not isinstance(action, dict) or action.get("type") != "safe-terminate":
                continue
            for pattern in action.get("exempt-principals") or ():
                if not isinstance(pattern, str) or principals.unexpanded(pattern):
                    continue
                try:
                    exemption = principals.parse(pattern)
                except ValueError:
                    continue  # validation reports it
                if not exemption.account and not pattern.startswith("arn:") \
                        and "/" not in pattern:
                    warnings.append(
                        "%s: policy %s exempts %r, a role of that name at any path in any "
                        "account: anyone allowed iam:CreateRole can create one. Exempt it "
                        "by ARN (arn:aws:iam::ACCOUNT:role/PATH/%s) or reserved path, and "
                        "attach the SCP of broom scp --admin ... (docs/security.md)" % (
                            path, policy.get("name"), pattern, pattern))
    return warnings


def unknown_placeholders(files, targets, allow_vars=()):
    """A problem for each ``{name}`` of a policy file that is no var: not Broom's, not
    c7n's own, set by no account (nor the top-level ``vars``) and not allowed."""
    known = set(varnames.BROOM_VARS) | varnames.builtin_vars() | set(allow_vars)
    for account, _ in targets:
        known |= set(account.get("vars") or {})
    problems = []
    for path, data in files:
        for name in sorted(varnames.placeholders(data) - known):
            problems.append("%s: {%s} is not a var Broom, c7n or any account sets%s; "
                            "allow a var of your own with --allow-var %s" % (
                                path, name, varnames.hint(name, known), name))
    return problems


def preflight(config_path, policy_paths, accounts=(), regions=(), allow_vars=()):
    """Check every (account, region, policy) as ``c7n-org run`` would deploy it.
    ``allow_vars``: var names of the user's own that no policy file given uses."""
    from c7n.resources import load_available

    load_available()
    result = Result()
    targets = load_accounts(config_path, accounts, regions)
    for region_list in (r for _, r in targets):
        if "all" in region_list:
            raise PreflightError("%s: 'regions: [all]' needs an AWS call to list the "
                                 "regions: list them, or pass --region" % config_path)
    files = [(path, load_policy_file(path)) for path in policy_paths]
    schema_check = schema_checker()
    used = set()
    for _, data in files:
        used |= varnames.placeholders(data)
        result.policies += len(data.get("policies") or ())
    for path, data in files:
        result.warnings.extend(bare_name_exemptions(path, data))
    result.accounts = len(targets)
    result.regions = len({r for _, region_list in targets for r in region_list})
    result.account_regions = sum(len(region_list) for _, region_list in targets)
    result.problems += unknown_placeholders(files, targets, allow_vars)
    for account, region_list in targets:
        given = account.get("vars") or {}
        for _, message in varnames.unknown_vars(given, [d for _, d in files], allow_vars):
            result.problems.append("%s: %s" % (label(account, "").rstrip(), message))
        for var in sorted(set(given) & set(varnames.BROOM_VARS) - used):
            result.warnings.append("%s: var %r is used by none of the policies checked" % (
                label(account, "").rstrip(), var))
        for region in region_list:
            for _, data in files:
                for problem in check(account, region, data, schema_check):
                    result.problems.append("%s %s" % (label(account, region), problem))
                result.checks += len(data.get("policies") or ())
    return result
