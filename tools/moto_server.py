"""Starts moto's server with its requests serialised, so concurrent clients cannot corrupt it.

Usage: python tools/moto_server.py -H 127.0.0.1 -p PORT   (the same arguments as `moto_server`)

Why: moto's server runs every request on its own thread (werkzeug `threaded=True`), but its
in-memory backends are not written for concurrent access; moto's documentation says so
(getmoto/moto#7166, "Moto concurrency safety", and issue #372). What the patterns hit:

- DynamoDB `TransactWriteItems` (moto/dynamodb/models/__init__.py, `transact_write_items`) deep-copies
  every table it touches as a rollback snapshot. A put on another thread during the copy raises
  `RuntimeError: dictionary changed size during iteration` (HTTP 500). Worse, a cancelled
  transaction (a condition that failed, such as a taken email) restores that snapshot over the live
  table, silently erasing every write other threads made to the table in between; and its
  check-then-put is not atomic, so two transactions can both pass one condition.
- SQS `DeleteMessage` (moto/sqs/models.py, `Queue.delete_message`) rebuilds the queue's message
  list and assigns it back: a message sent on another thread in between is lost although
  `SendMessage` answered with its id. Two concurrent receives can return one message twice.

One lock around each request's handling (moto's `BaseResponse._dispatch`: parsing, the backend
call, serialisation) makes every operation atomic, as it is on AWS. Throughput barely changes:
moto is pure Python, so the GIL already ran one request at a time; the lock only stops them
interleaving. The one operation that waits, an SQS long poll (`ReceiveMessage` with
`WaitTimeSeconds`), releases the lock while it sleeps (moto's `Queue.wait_for_messages`), so a long
poll never blocks other clients; it re-takes the lock before it looks at the queue again.

The stress tests in local/testkit/tests/moto_concurrency.rs show each fault gone at the
concurrency the local gateway produces.
"""

import json
import sys
import threading
import time

from moto.core import responses
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import main
from moto.sqs import models as sqs_models

_LOCK = threading.Lock()
_HELD = threading.local()


def _serialised(dispatch):
    def locked_dispatch(self, *args, **kwargs):
        with _LOCK:
            _HELD.value = True
            try:
                return dispatch(self, *args, **kwargs)
            finally:
                _HELD.value = False

    return locked_dispatch


def _waits_unlocked(wait):
    def wait_without_lock(self, timeout):
        if not getattr(_HELD, "value", False):
            return wait(self, timeout)
        _HELD.value = False
        _LOCK.release()
        try:
            return wait(self, timeout)
        finally:
            _LOCK.acquire()
            _HELD.value = True

    return wait_without_lock


# What CloudWatch's AWS/SQS metric ApproximateAgeOfOldestMessage is ("the approximate age of the
# oldest non-deleted message in the queue", SQS developer guide, available CloudWatch metrics) has
# no SQS API to read it from: the local gateway, which publishes the queues' metrics, reads it
# here, for every queue of every account and region, under the same lock as every request.
OLDEST_PATH = "/_local/sqs/oldest-message-age"


def _oldest_ages():
    now_ms = time.time() * 1000
    ages = {}
    for account in list(sqs_models.sqs_backends.keys()):
        for region, backend in list(sqs_models.sqs_backends[account].items()):
            for name, queue in list(backend.queues.items()):
                sent = [m.sent_timestamp for m in queue._messages if m.sent_timestamp]
                ages[f"{account}/{region}/{name}"] = (
                    max(0.0, (now_ms - min(sent)) / 1000) if sent else 0.0
                )
    return ages


def _with_oldest(call):
    def dispatch(self, environ, start_response):
        if environ.get("PATH_INFO") != OLDEST_PATH:
            return call(self, environ, start_response)
        with _LOCK:
            body = json.dumps(_oldest_ages()).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    return dispatch


responses.BaseResponse._dispatch = _serialised(responses.BaseResponse._dispatch)
DomainDispatcherApplication.__call__ = _with_oldest(DomainDispatcherApplication.__call__)
sqs_models.Queue.wait_for_messages = _waits_unlocked(sqs_models.Queue.wait_for_messages)

if __name__ == "__main__":
    sys.exit(main())
