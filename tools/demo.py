#!/usr/bin/env python3
"""`make demo`: start the local stack, walk through each pattern as a user would with curl, stop.

Every step prints the command it runs, what came back and what that proves; the demo exits
non-zero as soon as something does not behave.
"""
import argparse
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

import boto3

STEP = 0


def say(text):
    print(text, flush=True)


def step(title):
    global STEP
    STEP += 1
    say(f"\n--- {STEP}. {title}")


def proved(text):
    say(f"    ok: {text}")


def fail(text):
    say(f"    FAILED: {text}")
    raise SystemExit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    fail(f"timed out after {timeout:.0f}s waiting for {what}")


def curl(args):
    """Runs curl, shows the command (local-only credentials included) and returns (status, body)."""
    shown = " ".join(shlex.quote(a) for a in args)
    say(f"    $ curl {shown}")
    out = subprocess.run(
        ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args],
        capture_output=True, text=True, check=False,
    )
    if out.returncode != 0:
        fail(f"curl failed: {out.stderr.strip()}")
    body, _, status = out.stdout.rpartition("\n")
    say(f"    -> {status} {body}")
    return int(status), body


def queue_depth(sqs, url):
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def sqs_buffer(state, pattern, redrive_bin):
    base = pattern["baseUrl"]
    user, password = pattern["credentials"]["username"], pattern["credentials"]["password"]
    aws = dict(endpoint_url=state["motoEndpoint"], region_name=state["region"],
               aws_access_key_id="testing", aws_secret_access_key="testing")
    sqs, dynamodb = boto3.client("sqs", **aws), boto3.client("dynamodb", **aws)
    table = pattern["tables"]["EventsTable"]
    queue = next(q for q in pattern["queues"].values() if q.get("deadLetterTargetArn"))
    dlq = next(q for q in pattern["queues"].values() if q["arn"] == queue["deadLetterTargetArn"])
    say(f"\n=== sqs-buffer: POST {base}/submit with Basic auth, SQS buffer, DynamoDB table {table}")

    step("A good event, with the right credentials")
    status, body = curl(["-u", f"{user}:{password}", "-H", "Content-Type: application/json",
                         "-d", '{"eventId":"demo-1","message":"hello"}', f"{base}/submit"])
    if status != 200:
        fail(f"expected 200, got {status}")
    message_id = json.loads(body)["SendMessageResponse"]["SendMessageResult"]["MessageId"]
    proved(f"accepted straight into SQS, MessageId {message_id}")
    item = wait_for("the event in DynamoDB", lambda: dynamodb.get_item(
        TableName=table, Key={"eventId": {"S": "demo-1"}}).get("Item"))
    proved(f"the consumer stored it under eventId demo-1 (messageId {item['messageId']['S']})")

    step("The same event again (a client retry)")
    status, _ = curl(["-u", f"{user}:{password}", "-d", '{"eventId":"demo-1","message":"retry"}', f"{base}/submit"])
    wait_for("the queue to drain", lambda: queue_depth(sqs, queue["url"]) == 0)
    item = dynamodb.get_item(TableName=table, Key={"eventId": {"S": "demo-1"}})["Item"]
    if status != 200 or item["messageId"]["S"] != message_id:
        fail("the retry overwrote the stored event")
    proved("accepted, and the stored event was neither duplicated nor overwritten")

    step("A wrong password")
    status, _ = curl(["-u", f"{user}:not-the-password", "-d", '{"eventId":"demo-2"}', f"{base}/submit"])
    if status != 403:
        fail(f"expected 403, got {status}")
    proved("403 Forbidden from the authorizer")

    step("No Authorization header at all")
    status, _ = curl(["-d", '{"eventId":"demo-3"}', f"{base}/submit"])
    if status != 401:
        fail(f"expected 401, got {status}")
    proved("401 Unauthorized before any authorizer ran")
    time.sleep(1)
    for event_id in ("demo-2", "demo-3"):
        if dynamodb.get_item(TableName=table, Key={"eventId": {"S": event_id}}).get("Item"):
            fail(f"{event_id} was stored although refused")
    proved("nothing refused was enqueued or stored")

    step("A body that is not JSON")
    status, body = curl(["-u", f"{user}:{password}", "-d", "Test Message", f"{base}/submit"])
    if status != 200:
        fail(f"expected 200, got {status}")
    proved("accepted: the API does not parse bodies, the consumer does")
    say(f"    waiting for maxReceiveCount={pattern['parameters']['MaxReceiveCount']} failed receives...")
    wait_for("the message in the dead-letter queue", lambda: queue_depth(sqs, dlq["url"]) == 1, timeout=60)
    proved(f"the consumer reported it failed each time; SQS moved it to {dlq['name']}")

    step("Redrive the dead-letter queue once the cause is fixed")
    cmd = [redrive_bin, dlq["url"]]
    say(f"    $ AWS_ENDPOINT_URL={state['motoEndpoint']} {' '.join(cmd)}")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         env={**os.environ, "AWS_ENDPOINT_URL": state["motoEndpoint"],
                              "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                              "AWS_REGION": state["region"]})
    say(f"    -> {out.stdout.strip() or out.stderr.strip()}")
    if out.returncode != 0 or not out.stdout.startswith("moved 1 "):
        fail("redrive did not move the message")
    if queue_depth(sqs, dlq["url"]) != 0:
        fail("the dead-letter queue is not empty after the redrive")
    proved("the dead-letter queue is empty: the message is back on the source queue")
    wait_for("the redriven message to be consumed again", lambda: queue_depth(sqs, dlq["url"]) == 1, timeout=60)
    proved("the consumer processed it again; still not JSON, it returned to the DLQ: nothing lost")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--redrive", required=True)
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="demo-")
    state_file = os.path.join(workdir, "stack.json")
    port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateway = None
    try:
        wait_for("moto", lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, timeout=30)
        # Shorter timeouts than the template's defaults keep the failure path quick; the template
        # itself is untouched, exactly as `sam deploy --parameter-overrides` would do.
        overrides = "QueueVisibilityTimeout=2 ConsumerTimeout=2 MaxReceiveCount=2"
        say(f"Starting the local stack (moto on {port}; overrides: {overrides})")
        log = open(os.path.join(workdir, "gateway.log"), "w")
        gateway = subprocess.Popen(
            [args.gateway, "--endpoint", f"http://127.0.0.1:{port}", "--template", "template.yaml",
             "--port", "0", "--stack-name", "demo", "--state-file", state_file,
             "--parameter-overrides", overrides],
            stdout=log, stderr=subprocess.STDOUT)
        wait_for("the local gateway", lambda: os.path.exists(state_file) or gateway.poll() is not None, 60)
        if gateway.poll() is not None:
            fail("the local gateway did not start:\n" + open(os.path.join(workdir, "gateway.log")).read())
        with open(state_file) as f:
            state = json.load(f)
        sqs_buffer(state, state["patterns"]["SqsBuffer"], args.redrive)
        say(f"\nDemo complete: {STEP} steps behaved as described.")
    finally:
        if gateway is not None:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=10)
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
