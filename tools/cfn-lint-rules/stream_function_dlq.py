"""E9107: a function-level dead-letter queue on a Kinesis or DynamoDB stream consumer.

Why: a function's DeadLetterConfig (SAM: DeadLetterQueue) receives events of asynchronous
invocations only. Lambda reads streams synchronously through an event source mapping, so a
failed stream batch never reaches that queue; it is retried until it expires or succeeds, and is
recorded only by the mapping's own DestinationConfig.OnFailure. A function DLQ on a stream
consumer looks like a failure path and is none.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cfnlint.rules import CloudFormationLintRule, RuleMatch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)
import _lintkit as kit  # noqa: E402  (this directory is not a package)

DLQ_KEYS = ("DeadLetterConfig", "DeadLetterQueue")
STREAMS = {"kinesis": "Kinesis stream", "dynamodb": "DynamoDB stream"}


class StreamConsumerFunctionDeadLetterQueue(CloudFormationLintRule):
    id = "E9107"
    shortdesc = "Function dead-letter queue on a stream consumer"
    description = (
        "A function's DeadLetterConfig / DeadLetterQueue applies to asynchronous invokes only and "
        "never receives failed Kinesis or DynamoDB stream batches; give the event source mapping "
        "a DestinationConfig.OnFailure instead."
    )
    source_url = "https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html"
    tags = ["resources", "lambda", "kinesis", "dynamodb"]

    def match(self, cfn):
        template = cfn.template
        matches = []
        reported: set[str] = set()
        for source in kit.event_sources(template):
            if source.kind not in STREAMS or source.function is None:
                continue
            if source.function in reported:
                continue
            function = template["Resources"][source.function]
            props = kit.properties(function)
            key = next((k for k in DLQ_KEYS if k in props), None)
            if key is None or kit.is_no_value(props[key]):
                continue
            reported.add(source.function)
            matches.append(
                RuleMatch(
                    ["Resources", source.function, "Properties", key],
                    f"{source.function}: {key} receives only events of asynchronous invokes, but "
                    f"this function consumes a {STREAMS[source.kind]} through {source.label}, "
                    "which Lambda invokes synchronously: failed batches never reach this queue. "
                    "Remove it and set DestinationConfig.OnFailure (with finite "
                    "MaximumRetryAttempts or MaximumRecordAgeInSeconds) on the event source "
                    f"mapping. See {self.source_url} and "
                    "https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html",
                )
            )
        return matches
