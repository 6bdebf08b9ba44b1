"""E9102: unconditional reserved concurrency that the account's concurrency quota cannot hold.

Why: Lambda always keeps 100 concurrent executions of an account's quota unreserved, and refuses
a ReservedConcurrentExecutions that would leave less. AWS's default quota is 1,000 per region,
so at most 900 can be reserved; but new accounts often start with a quota of 10 or 50, where no
reservation at all is possible and the function (and the stack) fails to deploy.

The rule sums every function's ReservedConcurrentExecutions that is set unconditionally: a
literal, or a Ref to a parameter (read by its Default), including the functions of nested
stacks whose template is a local file (AWS::Serverless::Application Location,
AWS::CloudFormation::Stack TemplateURL). An Fn::If with an AWS::NoValue branch, and a function
under a resource Condition, are opt-in and count 0. It fails when the sum exceeds the quota
minus 100 (never below 0). The quota is an option: `--configure-rule E9102:quota=10`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cfnlint.decode import decode
from cfnlint.rules import CloudFormationLintRule, RuleMatch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)
import _lintkit as kit  # noqa: E402  (this directory is not a package)

UNRESERVED_MINIMUM = 100
NESTED = {
    "AWS::Serverless::Application": "Location",
    "AWS::CloudFormation::Stack": "TemplateURL",
}
MAX_DEPTH = 5


def _sam_global_reservation(template: dict):
    globals_ = template.get("Globals")
    function = globals_.get("Function") if isinstance(globals_, dict) else None
    return function.get("ReservedConcurrentExecutions") if isinstance(function, dict) else None


def reservations(
    template: dict,
    template_file: str | None,
    overrides: dict | None = None,
    prefix: str = "",
    depth: int = 0,
    merge_globals: bool = False,
) -> list[tuple[str, int, str, list]]:
    """(function, reserved, how it was read, path of its setting in `template`) for every
    unconditional reservation of `template` and of its local nested stacks."""
    found = []
    global_value = _sam_global_reservation(template) if merge_globals else None
    for logical, function in kit.resources(template, *kit.FUNCTION_TYPES):
        props = kit.properties(function)
        value = props.get("ReservedConcurrentExecutions")
        if value is None and function.get("Type") == kit.SAM_FUNCTION:
            value = global_value
        if function.get("Condition"):
            continue
        read = kit.unconditional_reservation(template, value, overrides)
        if read is not None and read[0] > 0:
            path = ["Resources", logical, "Properties", "ReservedConcurrentExecutions"]
            found.append((prefix + logical, read[0], read[1], path))
    if depth >= MAX_DEPTH or template_file is None:
        return found
    for logical, stack in kit.resources(template, *NESTED):
        if stack.get("Condition"):
            continue
        props = kit.properties(stack)
        location = props.get(NESTED[stack["Type"]])
        if not isinstance(location, str) or "://" in location:
            continue
        child_file = os.path.join(os.path.dirname(template_file), location)
        if not os.path.isfile(child_file):
            continue
        child, problems = decode(child_file)
        if problems or not isinstance(child, dict):
            continue
        passed = {}
        given = props.get("Parameters")
        for name, value in (given.items() if isinstance(given, dict) else []):
            number = kit.default_number(template, value, overrides)
            if number is not None:
                passed[name] = number
        for name, reserved, how, _ in reservations(
            child, child_file, passed, f"{prefix}{logical}/", depth + 1, True
        ):
            found.append((name, reserved, how, ["Resources", logical]))
    return found


class ReservedConcurrencyOverQuota(CloudFormationLintRule):
    id = "E9102"
    shortdesc = "Unconditional reserved concurrency beyond what the account quota allows"
    description = (
        "Lambda keeps 100 concurrent executions of the account quota unreserved. The sum of "
        "every function's unconditional ReservedConcurrentExecutions (literals and parameter "
        "Defaults, nested local stacks included) must not exceed quota - 100. The quota is the "
        "rule option `quota` (default 1000, AWS's default; accounts with a quota of 10 or 50 "
        "should pass --configure-rule E9102:quota=10, and then any unconditional reservation "
        "fails). Make reservations opt-in with Fn::If and AWS::NoValue."
    )
    source_url = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html"
    tags = ["resources", "lambda", "concurrency"]

    def __init__(self) -> None:
        super().__init__()
        self.config_definition = {"quota": {"default": 1000, "type": "integer"}}
        self.configure()

    def match(self, cfn):
        quota = int(self.config["quota"])
        allowed = max(0, quota - UNRESERVED_MINIMUM)
        found = reservations(cfn.template, cfn.filename)
        total = sum(reserved for _, reserved, _, _ in found)
        if total <= allowed:
            return []
        listing = ", ".join(f"{name} {reserved} ({how})" for name, reserved, how, _ in found)
        return [
            RuleMatch(
                found[0][3],
                f"Functions reserve {total} concurrent executions unconditionally: {listing}. "
                f"An account with a concurrency quota of {quota} can reserve at most "
                f"{allowed}: Lambda keeps {UNRESERVED_MINIMUM} unreserved and refuses the "
                "reservation, so the function and the stack fail to deploy. Make the "
                "reservations opt-in (Fn::If [Condition, N, !Ref AWS::NoValue], off by default) "
                "or lower them; if your account's quota is higher, tell the rule with "
                f"--configure-rule {self.id}:quota=<your quota>. See {self.source_url}",
            )
        ]
