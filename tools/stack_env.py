#!/usr/bin/env python3
"""Print shell `export` lines for one pattern of the running local stack (.local/stack.json).

    eval "$(.venv/bin/python tools/stack_env.py --pattern SqsBuffer)"
    curl -u "$API_USER:$API_PASSWORD" -d '{"eventId":"e-1"}' "$BASE_URL/submit"

Exports AWS_ENDPOINT_URL (moto) and test credentials, so the AWS CLI, SDKs and the project's tools
reach the local stack; BASE_URL, API_USER, API_PASSWORD; and, when the pattern has them, QUEUE_URL
and DLQ_URL (a queue and its dead-letter queue), <QUEUE_NAME>_URL for every queue, TABLE_NAME and
STREAM_NAME; SIGV4_USER (key:secret for curl --aws-sigv4) for APIs with IAM authorization.
"""
import argparse
import json
import shlex
import sys


def snake(name: str) -> str:
    """DeadLetterQueue -> DEAD_LETTER_QUEUE."""
    out = ""
    for i, c in enumerate(name):
        if c.isupper() and i > 0:
            out += "_"
        out += c.upper()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", default="SqsBuffer", help="nested stack logical id")
    parser.add_argument("--state", default=".local/stack.json")
    args = parser.parse_args()
    try:
        with open(args.state) as f:
            state = json.load(f)
    except FileNotFoundError:
        print(f"{args.state} not found: start the stack with 'make local' first", file=sys.stderr)
        return 2
    pattern = state["patterns"].get(args.pattern)
    if pattern is None:
        known = ", ".join(state["patterns"])
        print(f"no pattern {args.pattern} in {args.state} (have: {known})", file=sys.stderr)
        return 2
    env = {
        "AWS_ENDPOINT_URL": state["motoEndpoint"],
        "AWS_ACCESS_KEY_ID": state["accessKeyId"],
        "AWS_SECRET_ACCESS_KEY": state["secretAccessKey"],
        "AWS_REGION": state["region"],
        "AWS_DEFAULT_REGION": state["region"],
        "BASE_URL": pattern.get("baseUrl") or "",
    }
    creds = pattern.get("credentials") or {}
    env["API_USER"] = creds.get("username", "")
    env["API_PASSWORD"] = creds.get("password", "")
    queues = pattern.get("queues", {})
    # The source queue is the one with a redrive policy; its target is the dead-letter queue.
    for queue in queues.values():
        target = queue.get("deadLetterTargetArn")
        if target:
            env["QUEUE_URL"] = queue["url"]
            env["DLQ_URL"] = next(q["url"] for q in queues.values() if q["arn"] == target)
    # Every queue also under its own name: DeadLetterQueue -> DEAD_LETTER_QUEUE_URL.
    for logical, queue in queues.items():
        env[snake(logical) + "_URL"] = queue["url"]
    tables = pattern.get("tables", {})
    if len(tables) == 1:
        env["TABLE_NAME"] = next(iter(tables.values()))
    # Every bucket under its own name: FailureBucket -> FAILURE_BUCKET.
    for logical, bucket in pattern.get("buckets", {}).items():
        env[snake(logical)] = bucket
    streams = pattern.get("streams", {})
    if len(streams) == 1:
        env["STREAM_NAME"] = next(iter(streams.values()))
    signing = state.get("signing")
    if signing and any(api.get("auth") == "AWS_IAM" for api in (pattern.get("apis") or {}).values()):
        # For curl --aws-sigv4 "aws:amz:<region>:execute-api" --user "$SIGV4_USER".
        env["SIGV4_USER"] = f"{signing['accessKeyId']}:{signing['secretAccessKey']}"
    for key, value in env.items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
