"""E9104: an SQS event source whose BatchSize can exceed 10 while its batching window can be 0.

Why: Lambda rejects an SQS event source mapping with a BatchSize above 10 unless
MaximumBatchingWindowInSeconds is at least 1 second, so such a stack fails to deploy. The rule
reads literals and the parameters behind a Ref (Default, MinValue/MaxValue, AllowedValues) and
both branches of an Fn::If; it passes when the values cannot break the limit, or when a
template-level `Rules` entry mentions every parameter involved (the way a template refuses such
a combination before anything is deployed).
"""

from __future__ import annotations

import sys
from pathlib import Path

from cfnlint.rules import CloudFormationLintRule, RuleMatch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)
import _lintkit as kit  # noqa: E402  (this directory is not a package)

SQS_BATCH_WITHOUT_WINDOW = 10


def _describe(template: dict, name: str, value) -> str:
    refs = kit.refs(value)
    params = [r for r in sorted(refs) if kit.parameter(template, r) is not None]
    return f"{name} (parameter {', '.join(params)})" if params else name


class SqsBatchSizeWithoutWindow(CloudFormationLintRule):
    id = "E9104"
    shortdesc = "SQS BatchSize above 10 without a batching window"
    description = (
        "Lambda rejects an SQS event source with BatchSize greater than 10 unless "
        "MaximumBatchingWindowInSeconds is at least 1. Flags literals and parameters whose "
        "Default/MinValue/MaxValue/AllowedValues allow that combination, unless a template "
        "Rules entry mentions every parameter involved."
    )
    source_url = "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-parameters.html"
    tags = ["resources", "lambda", "sqs"]

    def match(self, cfn):
        template = cfn.template
        matches = []
        for source in kit.event_sources(template):
            if source.kind != "sqs":
                continue
            batch_value = source.props.get("BatchSize")
            window_value = source.props.get("MaximumBatchingWindowInSeconds")
            batch = kit.possible(template, batch_value)
            window = kit.possible(template, window_value)
            if batch.unknown or batch.high <= SQS_BATCH_WITHOUT_WINDOW:
                continue
            if not window.absent and (window.unknown or window.low >= 1):
                continue
            involved = batch.parameters | window.parameters
            if kit.guarded_by_rules(template, involved):
                continue
            batch_text = _describe(template, "BatchSize", batch_value)
            window_text = (
                "MaximumBatchingWindowInSeconds is not set"
                if window_value is None
                else _describe(template, "MaximumBatchingWindowInSeconds", window_value)
                + " can be 0 or unset"
            )
            path = source.path + (["BatchSize"] if "BatchSize" in source.props else [])
            guard = (
                ", or add a template Rules entry that refuses the combination (its condition "
                f"and assertions mentioning {' and '.join(sorted(involved))})"
                if involved
                else ""
            )
            matches.append(
                RuleMatch(
                    path,
                    f"{source.label}: {batch_text} can exceed {SQS_BATCH_WITHOUT_WINDOW} while "
                    f"{window_text}; Lambda rejects an SQS event source with a BatchSize above "
                    f"{SQS_BATCH_WITHOUT_WINDOW} unless MaximumBatchingWindowInSeconds is at least "
                    "1, so the deployment fails. Keep BatchSize at 10 or less (MaxValue: 10 on a "
                    "parameter), or set MaximumBatchingWindowInSeconds to at least 1 (MinValue: 1 "
                    f"on a parameter){guard}. See {self.source_url}",
                )
            )
        return matches
