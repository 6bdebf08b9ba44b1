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

import sys
import threading

from moto.core import responses
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


responses.BaseResponse._dispatch = _serialised(responses.BaseResponse._dispatch)
sqs_models.Queue.wait_for_messages = _waits_unlocked(sqs_models.Queue.wait_for_messages)

if __name__ == "__main__":
    sys.exit(main())
