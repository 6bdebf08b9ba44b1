#!/usr/bin/env python3
"""`make demo`: start the local stack, walk through each pattern as a user would with curl, stop.

Every step prints the command it runs, what came back and what that proves; the demo exits
non-zero as soon as something does not behave.
"""
import argparse
import json
import re
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


def tool_env(state):
    return {**os.environ, "AWS_ENDPOINT_URL": state["motoEndpoint"], "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": state["region"]}


def run_tool(state, cmd):
    say(f"    $ AWS_ENDPOINT_URL={state['motoEndpoint']} {' '.join(shlex.quote(c) for c in cmd)}")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=tool_env(state))
    say("    -> " + (out.stdout.strip() or out.stderr.strip()).replace("\n", "\n       "))
    return out


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
    # SQS's own XML answer, passed through by the SQS-SendMessage integration as on AWS.
    found = re.search(r"<MessageId>([^<]+)</MessageId>", body)
    if not found:
        fail(f"no MessageId in SQS's answer: {body}")
    message_id = found.group(1)
    proved(f"accepted straight into SQS, MessageId {message_id}")
    item = wait_for("the event in DynamoDB", lambda: dynamodb.get_item(
        TableName=table, Key={"eventId": {"S": "demo-1"}}).get("Item"))
    proved(f"the consumer stored it under eventId demo-1 (messageId {item['messageId']['S']})")

    step("The same event again (a client retry)")
    status, _ = curl(["-u", f"{user}:{password}", "-H", "Content-Type: application/json",
                      "-d", '{"eventId":"demo-1","message":"hello"}', f"{base}/submit"])
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
    out = run_tool(state, [redrive_bin, dlq["url"]])
    if out.returncode != 0 or not out.stdout.startswith("moved 1 "):
        fail("redrive did not move the message")
    if queue_depth(sqs, dlq["url"]) != 0:
        fail("the dead-letter queue is not empty after the redrive")
    proved("the dead-letter queue is empty: the message is back on the source queue")
    wait_for("the redriven message to be consumed again", lambda: queue_depth(sqs, dlq["url"]) == 1, timeout=60)
    proved("the consumer processed it again; still not JSON, it returned to the DLQ: nothing lost")


def kinesis_stream(state, pattern, recover_bin):
    base = pattern["baseUrl"]
    user, password = pattern["credentials"]["username"], pattern["credentials"]["password"]
    stream = pattern["streams"]["EventStream"]
    aws = dict(endpoint_url=state["motoEndpoint"], region_name=state["region"],
               aws_access_key_id="testing", aws_secret_access_key="testing")
    s3, dynamodb = boto3.client("s3", **aws), boto3.client("dynamodb", **aws)
    table = pattern["tables"]["EventsTable"]
    failures = pattern["buckets"]["FailureBucket"]

    def kept_batches():
        objects = s3.list_objects_v2(Bucket=failures, Prefix="aws/lambda/").get("Contents", [])
        return [json.loads(s3.get_object(Bucket=failures, Key=o["Key"])["Body"].read()) for o in objects]
    submit = f"{base}/submit/{stream}"
    say(f"\n=== kinesis-stream: POST {submit}/{{eventId}} with Basic auth, Kinesis, DynamoDB table {table}")

    def item(key):
        return dynamodb.get_item(TableName=table, Key={"eventId": {"S": key}}, ConsistentRead=True).get("Item")

    step("Two updates of one order, in order")
    sequences = []
    for status_text in ("created", "paid"):
        status, body = curl(["-u", f"{user}:{password}", "-d", json.dumps({"status": status_text}),
                             f"{submit}/order-1"])
        if status != 200:
            fail(f"expected 200, got {status}")
        sequences.append(json.loads(body)["SequenceNumber"])
    stored = wait_for("the newest update applied", lambda: (lambda i: i if i and i["sequenceNumber"]["S"] == sequences[-1] else None)(item("order-1")))
    proved(f"order-1 holds the newest record ({stored['payload']['M']['status']['S']}, sequence {sequences[-1]}): per-key order kept")

    step("Another stream's name in the path")
    status, _ = curl(["-u", f"{user}:{password}", "-d", "{}", f"{base}/submit/someone-elses-stream/order-2"])
    if status != 404:
        fail(f"expected 404, got {status}")
    proved("404: the API writes to its own stream only")

    step("A wrong password")
    status, _ = curl(["-u", f"{user}:wrong", "-d", "{}", f"{submit}/order-3"])
    if status != 403:
        fail(f"expected 403, got {status}")
    proved("403 Forbidden, nothing put on the stream")

    step("A poison record between two good ones")
    for key, body in (("order-10", '{"status":"created"}'), ("order-11", "this is not JSON"), ("order-12", '{"status":"created"}')):
        status, _ = curl(["-u", f"{user}:{password}", "-d", body, f"{submit}/{key}"])
        if status != 200:
            fail(f"expected 200, got {status}")
    kept = wait_for("the failed batch in the on-failure bucket", kept_batches)
    info = kept[0]["KinesisBatchInfo"]
    wait_for("the good neighbours", lambda: item("order-10") and item("order-12"))
    proved(f"bisected and retried {pattern['parameters']['MaximumRetryAttempts']} time(s), then the batch went to the on-failure bucket "
           f"with its record (shard {info['shardId']}, sequence {info['startSequenceNumber']}); its neighbours are stored")
    out = run_tool(state, [recover_bin, "--bucket", failures, "--replay", "dry-run"])
    if out.returncode != 0 or "1 of 1 still retained" not in out.stdout:
        fail("the kept batch could not be read")
    proved("the bucket holds the record itself: it can be recovered once fixed, even after the stream's retention")
    for o in s3.list_objects_v2(Bucket=failures, Prefix="aws/lambda/").get("Contents", []):
        s3.delete_object(Bucket=failures, Key=o["Key"])

    step("An outage: the table is gone while a record arrives")
    dynamodb.delete_table(TableName=table)
    status, body = curl(["-u", f"{user}:{password}", "-d", '{"status":"created during the outage"}', f"{submit}/order-20"])
    if status != 200:
        fail(f"expected 200, got {status}")
    wait_for("the failed batch in the on-failure bucket", kept_batches)
    proved("the writes failed, the retries ran out, the batch went to the on-failure bucket")
    dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "eventId", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "eventId", "KeyType": "HASH"}])
    say("    (the table is back: the cause is fixed)")
    out = run_tool(state, [recover_bin, "--bucket", failures, "--table", table])
    if out.returncode != 0 or not item("order-20"):
        fail("the record was not recovered")
    proved("kinesis-recover read the record from the bucket and applied it through the consumer")


def async_invoke(state, pattern):
    base = pattern["baseUrl"]
    signing = state["signing"]
    sigv4 = ["--aws-sigv4", f"aws:amz:{signing['region']}:execute-api", "--user", f"{signing['accessKeyId']}:{signing['secretAccessKey']}"]
    aws = dict(endpoint_url=state["motoEndpoint"], region_name=state["region"],
               aws_access_key_id="testing", aws_secret_access_key="testing")
    dynamodb, events = boto3.client("dynamodb", **aws), boto3.client("events", **aws)
    table = pattern["tables"]["JobsTable"]
    say(f"\n=== async-invoke: SigV4-signed POST {base}/jobs, asynchronous processor, GET {base}/jobs/{{jobId}} from DynamoDB")

    def get(job_id):
        status, body = curl([*sigv4, f"{base}/jobs/{job_id}"])
        return status, (json.loads(body) if body.strip().startswith("{") else {})

    def final(job_id, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, body = get(job_id)
            if body.get("status") in ("SUCCEEDED", "FAILED"):
                return body
            time.sleep(1)
        fail(f"job {job_id} did not finish")

    step("A job, signed with curl --aws-sigv4")
    status, body = curl([*sigv4, "-H", "Content-Type: application/json", "-d", '{"seconds": 2}', f"{base}/jobs"])
    if status != 202:
        fail(f"expected 202, got {status}")
    job_id = json.loads(body)["jobId"]
    proved(f"202 at once; the job id is the API request id ({job_id}); nothing waited for the work")
    done = final(job_id)
    if done["status"] != "SUCCEEDED" or done["result"] != {"sleptSeconds": 2}:
        fail(f"unexpected job {done}")
    proved("polling GET /jobs/{jobId} (DynamoDB GetItem through a mapping template, no Lambda) shows SUCCEEDED with the result")

    step("The same request without a signature, and a body the model refuses")
    status, body = curl(["-H", "Content-Type: application/json", "-d", '{"seconds": 2}', f"{base}/jobs"])
    if status != 403:
        fail(f"expected 403, got {status}")
    status, body = curl([*sigv4, "-H", "Content-Type: application/json", "-d", '{"seconds": 0}', f"{base}/jobs"])
    if status != 400:
        fail(f"expected 400, got {status}")
    proved("403 Missing Authentication Token without SigV4; 400 Invalid request body for seconds < 1; no job started")

    step("A job that fails")
    status, body = curl([*sigv4, "-H", "Content-Type: application/json", "-d", '{"seconds": 1, "failure": "upstream timed out"}', f"{base}/jobs"])
    failed = final(json.loads(body)["jobId"])
    if failed["status"] != "FAILED" or failed["error"]["message"] != "job failed: upstream timed out":
        fail(f"unexpected job {failed}")
    proved(f"retried {failed['attempts'] - 1} time(s) by the asynchronous invoke, then the error handler recorded FAILED with the error")

    step("A failure the error handler cannot record either (the table is gone), then a replay")
    dynamodb.delete_table(TableName=table)
    status, body = curl([*sigv4, "-H", "Content-Type: application/json", "-d", '{"seconds": 1}', f"{base}/jobs"])
    lost_id = json.loads(body)["jobId"]
    archive = pattern["outputs"]["FailureArchiveName"]
    wait_for("the failure in the EventBridge archive", lambda: events.describe_archive(ArchiveName=archive).get("EventCount", 0) >= 1, 60)
    proved(f"processor and error handler both failed; the failure event is kept in archive {archive}")
    dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "jobId", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "jobId", "KeyType": "HASH"}])
    say("    (the table is back: the cause is fixed)")
    bus = pattern["outputs"]["FailureBusName"]
    archive_arn = events.describe_archive(ArchiveName=archive)["ArchiveArn"]
    bus_arn = events.describe_event_bus(Name=bus)["Arn"]
    say(f"    $ aws events start-replay --replay-name demo-replay --event-source-arn {archive_arn} \\")
    say(f"        --event-start-time <an hour ago> --event-end-time <now> --destination Arn={bus_arn}")
    now = time.time()
    events.start_replay(ReplayName="demo-replay", EventSourceArn=archive_arn, EventStartTime=now - 3600, EventEndTime=now,
                        Destination={"Arn": bus_arn})
    replayed = final(lost_id)
    if replayed["status"] != "FAILED":
        fail(f"unexpected job {replayed}")
    proved("the replay re-drove the archived failure to the error handler, which recorded the job FAILED")

    step("A job id that does not exist")
    status, _ = get("no-such-job")
    if status != 404:
        fail(f"expected 404, got {status}")
    proved("404 from the response template ($context.responseOverride.status), not a 200 with an empty body")


def user_api(state, pattern):
    base = pattern["baseUrl"]
    user, password = pattern["credentials"]["username"], pattern["credentials"]["password"]
    auth = ["-u", f"{user}:{password}", "-H", "Content-Type: application/json"]
    say(f"\n=== user-api: REST API from openapi.yaml at {base}: POST /users, GET /status/{{messageId}}, GET /users/{{userId}}")

    def status_of(message_id):
        code, body = curl(["-u", f"{user}:{password}", f"{base}/status/{message_id}"])
        return json.loads(body) if code == 200 else None

    step("Create a user")
    code, body = curl([*auth, "-d", '{"name": "Ada Lovelace", "email": "ada@example.com", "locale": "en-GB"}', f"{base}/users"])
    if code != 202:
        fail(f"expected 202, got {code}")
    message_id = json.loads(body)["messageId"]
    proved(f"202 with the SQS message id {message_id}: the request is queued, no Lambda answered")
    status = wait_for("the status to name the user", lambda: status_of(message_id))
    if status["state"] != "CREATED":
        fail(f"unexpected status {status}")
    proved(f"GET /status (a DynamoDB Query on the byMessageId index; 404 while pending) names user {status['userId']}, CREATED")
    created = status
    code, body = curl(["-u", f"{user}:{password}", f"{base}/users/{created['userId']}"])
    if code != 200 or json.loads(body)["email"] != "ada@example.com":
        fail("the user could not be read back")
    proved("GET /users/{userId} (a DynamoDB GetItem) returns the user; its id was derived from the message id")

    step("The same email again, in other letters")
    code, body = curl([*auth, "-d", '{"name": "Not Ada", "email": "ADA@example.com"}', f"{base}/users"])
    status = wait_for("the status", lambda: status_of(json.loads(body)["messageId"]))
    if status["state"] != "EMAIL_TAKEN" or status["userId"] is not None:
        fail(f"unexpected status {status}")
    proved("no second user; the status says EMAIL_TAKEN")

    step("A body the model refuses, and no credentials")
    code, _ = curl([*auth, "-d", '{"name": "", "email": "not-an-address"}', f"{base}/users"])
    if code != 400:
        fail(f"expected 400, got {code}")
    code, _ = curl(["-H", "Content-Type: application/json", "-d", '{"name": "X", "email": "x@example.com"}', f"{base}/users"])
    if code != 401:
        fail(f"expected 401, got {code}")
    proved("400 Invalid request body from the OpenAPI model; 401 without Basic credentials; nothing queued")

    step("Ids that do not exist")
    code, _ = curl(["-u", f"{user}:{password}", f"{base}/users/no-such-user"])
    code2, _ = curl(["-u", f"{user}:{password}", f"{base}/status/no-such-message"])
    if (code, code2) != (404, 404):
        fail(f"expected 404 and 404, got {code} and {code2}")
    proved("404 on both read routes")

    step("The first message delivered again, as SQS may (through the local Lambda Invoke API)")
    event = {"Records": [{"messageId": message_id, "receiptHandle": "redelivered",
                          "body": '{"name": "Ada Lovelace", "email": "ada@example.com", "locale": "en-GB"}',
                          "attributes": {"ApproximateReceiveCount": "2"}, "messageAttributes": {}, "eventSource": "aws:sqs"}]}
    code, body = curl(["-H", "Content-Type: application/json", "-d", json.dumps(event),
                       f"{state['lambdaEndpoint']}/2015-03-31/functions/UserApi.ConsumerFunction/invocations"])
    if code != 200 or json.loads(body).get("batchItemFailures") != []:
        fail("the redelivery was not handled")
    again = status_of(message_id)
    code, body = curl(["-u", f"{user}:{password}", f"{base}/users/{again['userId']}"])
    if again["state"] != "CREATED" or again["userId"] != created["userId"] or code != 200:
        fail(f"unexpected status after the redelivery {again}")
    proved("same message id, same user id: the conditional write made the redelivery a no-op (no second user)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--bin-dir", required=True, help="where sqs-redrive and kinesis-recover are built")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="demo-")
    state_file = os.path.join(workdir, "stack.json")
    port = free_port()
    # moto through the project's launcher, which serialises its requests (see tools/moto_server.py).
    launcher = os.path.join(os.path.dirname(os.path.abspath(__file__)), "moto_server.py")
    moto = subprocess.Popen([sys.executable, launcher, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateway = None
    try:
        wait_for("moto", lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, timeout=30)
        # Shorter timeouts than the template's defaults keep the failure path quick; the template
        # itself is untouched, exactly as `sam deploy --parameter-overrides` would do.
        overrides = ("QueueVisibilityTimeout=2 ConsumerTimeout=2 MaxReceiveCount=2 KinesisStream.MaximumRetryAttempts=1 "
                     "AsyncInvoke.MaximumRetryAttempts=1 AsyncInvoke.ErrorHandlerMaximumRetryAttempts=0")
        say(f"Starting the local stack (moto on {port}; overrides: {overrides})")
        log = open(os.path.join(workdir, "gateway.log"), "w")
        gateway = subprocess.Popen(
            [args.gateway, "--endpoint", f"http://127.0.0.1:{port}", "--template", "template.yaml",
             "--python", sys.executable,
             "--port", "0", "--lambda-port", "0", "--stack-name", "demo", "--state-file", state_file,
             "--parameter-overrides", overrides],
            stdout=log, stderr=subprocess.STDOUT)
        wait_for("the local gateway", lambda: os.path.exists(state_file) or gateway.poll() is not None, 60)
        if gateway.poll() is not None:
            fail("the local gateway did not start:\n" + open(os.path.join(workdir, "gateway.log")).read())
        with open(state_file) as f:
            state = json.load(f)
        sqs_buffer(state, state["patterns"]["SqsBuffer"], os.path.join(args.bin_dir, "sqs-redrive"))
        kinesis_stream(state, state["patterns"]["KinesisStream"], os.path.join(args.bin_dir, "kinesis-recover"))
        async_invoke(state, state["patterns"]["AsyncInvoke"])
        user_api(state, state["patterns"]["UserApi"])
        say(f"\nDemo complete: {STEP} steps behaved as described.")
    finally:
        if gateway is not None:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=10)
        moto.terminate()
        moto.wait(timeout=10)


if __name__ == "__main__":
    main()
