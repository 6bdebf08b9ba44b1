"""A Basic-auth Lambda authorizer for an HTTP API (payload 2.0, simple responses), as the seeds
write one: the expected credentials are read from Secrets Manager once per execution
environment, and compared in constant time.
"""

import base64
import hmac
import json
import os

import boto3

SECRET_ID = os.environ["SECRET_ID"]
secrets = boto3.client("secretsmanager")
_expected = None


def _credentials():
    global _expected
    if _expected is None:
        secret = secrets.get_secret_value(SecretId=SECRET_ID)
        value = json.loads(secret["SecretString"])
        _expected = f"{value['username']}:{value['password']}".encode()
    return _expected


def handler(event, context):
    header = (event.get("headers") or {}).get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic" or not token:
        return {"isAuthorized": False}
    try:
        given = base64.b64decode(token, validate=True)
    except ValueError:
        return {"isAuthorized": False}
    return {"isAuthorized": hmac.compare_digest(given, _credentials())}
