"""E9103: an SQS event source on a function with reserved concurrency but no
ScalingConfig.MaximumConcurrency.

Why: the SQS poller scales up to as many concurrent invokes as the queue backlog asks for, not
to the function's reserved concurrency. Invokes beyond the reservation are throttled, and a
throttled message goes back to the queue where its receive counts toward maxReceiveCount: under
a burst, good messages land in the dead-letter queue without the function ever running them.
ScalingConfig.MaximumConcurrency (2 or more, at most the reservation) caps the poller instead.
(AWS Compute Blog, "Introducing maximum concurrency of AWS Lambda functions when using Amazon SQS
as an event source", 2023.)
"""

from __future__ import annotations

import sys
from pathlib import Path

from cfnlint.rules import CloudFormationLintRule, RuleMatch

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.append(_HERE)
import _lintkit as kit  # noqa: E402  (this directory is not a package)


class SqsSourceWithoutMaximumConcurrency(CloudFormationLintRule):
    id = "E9103"
    shortdesc = "SQS event source on a reserved-concurrency function without MaximumConcurrency"
    description = (
        "An SQS event source (AWS::Lambda::EventSourceMapping or a SAM SQS event) whose function "
        "has unconditional ReservedConcurrentExecutions must set ScalingConfig.MaximumConcurrency; "
        "otherwise throttled receives count toward the queue's maxReceiveCount and good messages "
        "reach the dead-letter queue under bursts."
    )
    source_url = (
        "https://aws.amazon.com/blogs/compute/introducing-maximum-concurrency-of-aws-lambda-"
        "functions-when-using-amazon-sqs-as-an-event-source/"
    )
    tags = ["resources", "lambda", "sqs", "concurrency"]

    def match(self, cfn):
        template = cfn.template
        matches = []
        for source in kit.event_sources(template):
            if source.kind != "sqs" or source.function is None:
                continue
            reservation = kit.function_reservation(template, source.function)
            if reservation is None or reservation[0] <= 0:
                continue
            scaling = source.props.get("ScalingConfig")
            if isinstance(scaling, dict) and "MaximumConcurrency" in scaling:
                continue
            if scaling is not None and not isinstance(scaling, dict):
                continue  # an intrinsic: cannot tell, so do not guess
            matches.append(
                RuleMatch(
                    source.path,
                    f"{source.label}: {source.function} reserves {reservation[0]} concurrent "
                    "executions but this SQS event source has no ScalingConfig.MaximumConcurrency, "
                    "so Lambda polls the queue with more concurrency than the function may use; "
                    "the throttled messages return to the queue, each receive counts toward the "
                    "queue's maxReceiveCount, and good messages reach the dead-letter queue under "
                    "a burst. Set ScalingConfig: {MaximumConcurrency: N} with 2 <= N <= "
                    f"{reservation[0]}. See {self.source_url}",
                )
            )
        return matches
