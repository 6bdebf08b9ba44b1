"""E9101: a REST API stage that logs to CloudWatch in a template that does not set up the
account's API Gateway CloudWatch role.

Why: API Gateway writes REST API execution and access logs with one role per account and region,
set in the account settings (AWS::ApiGateway::Account). Until that role is set, creating a stage
with access logging or execution logging fails with "CloudWatch Logs role ARN must be set in
account settings to enable logging", so the stack fails on every fresh account. HTTP APIs
(AWS::ApiGatewayV2::Stage) log without that role and are never flagged.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cfnlint.rules import CloudFormationLintRule, RuleMatch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)
import _lintkit as kit  # noqa: E402  (this directory is not a package)

STAGE_TYPES = ("AWS::ApiGateway::Stage", "AWS::Serverless::Api")


def _logging_level_on(template: dict, value) -> bool:
    """A `LoggingLevel` that turns execution logging on (anything but OFF; a parameter by its
    Default)."""
    if value is None:
        return False
    name, arg = kit.intrinsic(value)
    if name == "Ref" and isinstance(arg, str) and kit.parameter(template, arg) is not None:
        value = kit.parameter(template, arg).get("Default")
    return not (isinstance(value, str) and value.upper() == "OFF")


def _data_trace_on(template: dict, value) -> bool:
    name, arg = kit.intrinsic(value)
    if name == "Ref" and isinstance(arg, str) and kit.parameter(template, arg) is not None:
        value = kit.parameter(template, arg).get("Default")
    return value is True or (isinstance(value, str) and value.lower() == "true")


class RestApiLoggingWithoutAccountRole(CloudFormationLintRule):
    id = "E9101"
    shortdesc = "REST API logging needs the account's API Gateway CloudWatch role"
    description = (
        "A REST API stage (AWS::ApiGateway::Stage or AWS::Serverless::Api) with "
        "AccessLogSetting, or MethodSettings with LoggingLevel or DataTraceEnabled, fails to "
        "deploy unless the account has an API Gateway CloudWatch Logs role. Declare an "
        "AWS::ApiGateway::Account (conditionally if you like) or make the stage's logging "
        "settings conditional (Fn::If with AWS::NoValue)."
    )
    source_url = "https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-logging.html"
    tags = ["resources", "apigateway", "logging"]

    def match(self, cfn):
        template = cfn.template
        if any(True for _ in kit.resources(template, "AWS::ApiGateway::Account")):
            return []
        matches = []
        for logical, stage in kit.resources(template, *STAGE_TYPES):
            props = kit.properties(stage)
            base = ["Resources", logical, "Properties"]
            found: list[tuple[list, str]] = []
            if "AccessLogSetting" in props and kit.always(
                props["AccessLogSetting"], lambda v: isinstance(v, dict)
            ):
                found.append((base + ["AccessLogSetting"], "AccessLogSetting"))
            settings = props.get("MethodSettings")
            if isinstance(settings, list):
                for index, setting in enumerate(settings):
                    for key, on in (
                        ("LoggingLevel", _logging_level_on),
                        ("DataTraceEnabled", _data_trace_on),
                    ):
                        if kit.always(
                            setting,
                            lambda s, key=key, on=on: isinstance(s, dict)
                            and key in s
                            and kit.always(s[key], lambda v, on=on: on(template, v)),
                        ):
                            found.append(
                                (base + ["MethodSettings", index, key], f"MethodSettings {key}")
                            )
            for path, what in found:
                matches.append(
                    RuleMatch(
                        path,
                        f"{logical}: {what} makes API Gateway write CloudWatch logs, which it "
                        "refuses until the account has an API Gateway CloudWatch role (\"CloudWatch "
                        "Logs role ARN must be set in account settings to enable logging\"), so "
                        "this stage fails to deploy on an account without one. Declare an "
                        "AWS::ApiGateway::Account with a CloudWatchRoleArn in the template "
                        "(conditionally, if some accounts already have one), or make the logging "
                        "setting conditional with Fn::If and AWS::NoValue. "
                        f"See {self.source_url}",
                    )
                )
        return matches
