"""An SQS consumer as the seeds write one: boto3, one conditional PutItem per record, in turn.

A record whose body is not JSON, or has no eventId, or whose write fails, is reported in
batchItemFailures; an eventId already stored is a duplicate, not a failure.
"""

import json
import os

import boto3
from botocore.exceptions import ClientError

TABLE_NAME = os.environ["TABLE_NAME"]
dynamodb = boto3.client("dynamodb")


def handler(event, context):
    failures = []
    for record in event["Records"]:
        try:
            body = json.loads(record["body"])
            dynamodb.put_item(
                TableName=TABLE_NAME,
                Item={
                    "eventId": {"S": str(body["eventId"])},
                    "body": {"S": record["body"]},
                    "messageId": {"S": record["messageId"]},
                },
                ConditionExpression="attribute_not_exists(eventId)",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                failures.append({"itemIdentifier": record["messageId"]})
        except (ValueError, KeyError, TypeError):
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
