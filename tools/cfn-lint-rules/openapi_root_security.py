"""E9105: an OpenAPI document for a REST API that declares `security` only at its root.

Why: API Gateway's OpenAPI import for REST APIs has been documented to ignore the root-level
`security` requirement and to apply only each operation's own `security`. An operation that
relies on the root declaration is imported with no authorizer: the route is open. The rule
reads AWS::ApiGateway::RestApi `Body` and AWS::Serverless::Api `DefinitionBody`, including a
document pulled in with the AWS::Include transform (or a SAM `DefinitionUri`) from a local
file, relative to the template's directory. An AWS::Serverless::Api with Auth.DefaultAuthorizer
is fine: the SAM transform writes that authorizer into each operation's own `security`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cfnlint.rules import CloudFormationLintRule, RuleMatch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)
import _lintkit as kit  # noqa: E402  (this directory is not a package)


class OpenApiRootOnlySecurity(CloudFormationLintRule):
    id = "E9105"
    shortdesc = "OpenAPI operation relying on root-level security"
    description = (
        "API Gateway's REST API import applies per-operation `security` only; when the "
        "document declares `security` at its root, every operation (get, put, post, delete, "
        "options, head, patch, trace, x-amazon-apigateway-any-method) needs its own `security` "
        "(or an explicit `security: []` for a deliberately open route)."
    )
    source_url = (
        "https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-known-issues.html"
    )
    tags = ["resources", "apigateway", "openapi", "security"]

    def match(self, cfn):
        matches = []
        for api in kit.openapi_documents(cfn.template, cfn.filename):
            root = api.doc.get("security")
            if not root:
                continue
            for pointer, operation in kit.operations(api.doc):
                if "security" in operation:
                    continue
                if api.sam_default_authorizer and (
                    str(pointer[-1]).lower() != "options" or api.sam_default_authorizer_on_options
                ):
                    continue  # the SAM transform gives the operation its own `security`
                path, where = api.where(pointer)
                matches.append(
                    RuleMatch(
                        path,
                        f"{where} has no `security` of its own and relies on the document's root "
                        "`security`, which API Gateway's OpenAPI import for REST APIs does not "
                        "apply: the route is deployed without an authorizer, open to anyone. "
                        "Repeat the requirement on the operation (e.g. `security: "
                        f"[{{{_first_scheme(root)}: []}}]`), or write `security: []` if the route "
                        f"is meant to be open. See {self.source_url}",
                    )
                )
        return matches


def _first_scheme(root) -> str:
    if isinstance(root, list) and root and isinstance(root[0], dict) and root[0]:
        return str(next(iter(root[0])))
    return "scheme"
