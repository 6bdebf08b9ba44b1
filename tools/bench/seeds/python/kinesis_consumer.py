"""A Kinesis consumer as the seeds write one: boto3, records in order, one PutItem each that
keeps the newest sequence number per partition key.

The first record that fails stops the batch: it is reported in batchItemFailures, so Lambda
retries from it and the records after it keep their order.
"""

import base64
import json
import os

import boto3
from botocore.exceptions import ClientError

TABLE_NAME = os.environ["TABLE_NAME"]
dynamodb = boto3.client("dynamodb")


def handler(event, context):
    for record in event["Records"]:
        data = record["kinesis"]
        sequence = data["sequenceNumber"]
        try:
            payload = json.loads(base64.b64decode(data["data"]))
            dynamodb.put_item(
                TableName=TABLE_NAME,
                Item={
                    "eventId": {"S": data["partitionKey"]},
                    "sequence": {"S": sequence.zfill(64)},
                    "payload": {"S": json.dumps(payload)},
                },
                ConditionExpression="attribute_not_exists(eventId) OR #s < :s",
                ExpressionAttributeNames={"#s": "sequence"},
                ExpressionAttributeValues={":s": {"S": sequence.zfill(64)}},
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                return {"batchItemFailures": [{"itemIdentifier": sequence}]}
        except ValueError:
            return {"batchItemFailures": [{"itemIdentifier": sequence}]}
    return {"batchItemFailures": []}
