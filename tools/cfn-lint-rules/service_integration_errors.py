"""E9106: an AWS service integration whose integration responses cover only success.

Why: for a non-proxy AWS integration (`type: aws` in x-amazon-apigateway-integration, `Type: AWS`
on an AWS::ApiGateway::Method) API Gateway picks the integration response whose selection
pattern (a regular expression matched against the whole backend status code) matches, and the
`default` one otherwise. With only `default`, every service error goes through the success
mapping: an SQS refusal becomes 202 with an empty message id, a DynamoDB error (throttling, a
missing table, denied access) becomes a 404 or an empty 200. The rule wants some pattern that
matches 4xx codes and some that matches 5xx codes (tested on "400" and "500").

Lambda invocations (URIs with `:lambda:path/`) are left out: for them API Gateway matches the
selection pattern against the Lambda error message, not a status code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from cfnlint.rules import CloudFormationLintRule, RuleMatch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)
import _lintkit as kit  # noqa: E402  (this directory is not a package)

REPRESENTATIVE = {"4xx": "400", "5xx": "500"}


def _uncovered(patterns: list[str]) -> list[str]:
    """The classes of status codes ("4xx", "5xx") no selection pattern matches."""
    missing = []
    for family, code in REPRESENTATIVE.items():
        covered = False
        for pattern in patterns:
            try:
                covered = covered or re.fullmatch(pattern, code) is not None
            except re.error:
                continue
        if not covered:
            missing.append(family)
    return missing


def _is_lambda(template: dict, uri) -> bool:
    return ":lambda:path/" in kit.text(template, uri)


class ServiceIntegrationWithoutErrorResponses(CloudFormationLintRule):
    id = "E9106"
    shortdesc = "AWS service integration without 4xx/5xx integration responses"
    description = (
        "A non-proxy AWS service integration (OpenAPI x-amazon-apigateway-integration type aws, "
        "or AWS::ApiGateway::Method Integration Type AWS) needs integration responses whose "
        "selection patterns match 4xx and 5xx status codes; with only a default response every "
        "service error is mapped as a success."
    )
    source_url = (
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/"
        "api-gateway-swagger-extensions-integration-response.html"
    )
    tags = ["resources", "apigateway", "openapi", "integration"]

    def _message(self, where: str, missing: list[str]) -> str:
        return (
            f"{where}: this AWS service integration has no integration response whose selection "
            f"pattern matches {' or '.join(missing)} status codes, so API Gateway sends those "
            "service errors through the default (success) mapping: an SQS refusal becomes a 202 "
            "with an empty message id, a DynamoDB error a 404 or an empty 200. Add responses "
            "keyed by selection patterns such as 4\\d{2} and 5\\d{2}, mapped to error status "
            f"codes. See {self.source_url}"
        )

    def match(self, cfn):
        template = cfn.template
        matches = []
        for api in kit.openapi_documents(template, cfn.filename):
            for pointer, operation in kit.operations(api.doc):
                integration = operation.get("x-amazon-apigateway-integration")
                if not isinstance(integration, dict):
                    continue
                kind = integration.get("type")
                if not (isinstance(kind, str) and kind.lower() == "aws"):
                    continue
                if _is_lambda(template, integration.get("uri")):
                    continue
                responses = integration.get("responses")
                patterns = [
                    str(key)
                    for key in (responses if isinstance(responses, dict) else {})
                    if str(key) != "default"
                ]
                missing = _uncovered(patterns)
                if missing:
                    path, where = api.where(pointer + ["x-amazon-apigateway-integration"])
                    matches.append(RuleMatch(path, self._message(where, missing)))
        for logical, method in kit.resources(template, "AWS::ApiGateway::Method"):
            integration = kit.properties(method).get("Integration")
            if not isinstance(integration, dict):
                continue
            kind = integration.get("Type")
            if not (isinstance(kind, str) and kind.upper() == "AWS"):
                continue
            if _is_lambda(template, integration.get("Uri")):
                continue
            responses = integration.get("IntegrationResponses")
            patterns = [
                str(r["SelectionPattern"])
                for r in (responses if isinstance(responses, list) else [])
                if isinstance(r, dict) and isinstance(r.get("SelectionPattern"), str)
            ]
            missing = _uncovered(patterns)
            if missing:
                matches.append(
                    RuleMatch(
                        ["Resources", logical, "Properties", "Integration"],
                        self._message(logical, missing),
                    )
                )
        return matches
