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

import collections
import copy
import json
import sys
import threading
import time

from moto.core import responses
from moto.dynamodb import models as dynamodb_models
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


def _untracked(model):
    """`model` without moto's instance tracking: its instances are freed once nothing uses them."""

    def new(cls, *args, **kwargs):
        return object.__new__(cls)

    model.__new__ = new


# moto's BaseModel appends every instance it ever creates to its class's `instances_tracked` list
# (moto/core/common_models.py; read only by the /moto-api/ dashboard's data.json) and never takes
# one out. DynamoDB's TransactWriteItems deep-copies each table it touches as its rollback
# snapshot (see above), and `copy.deepcopy` creates the copies through `__new__`: every
# transaction kept a whole copy of the table alive for good. Memory grew with transactions x
# table size: 300 one-item transactions on a table growing to 300 items left 45,150 Items
# tracked, and `make chaos` (2,500 user-api creates, each one transaction) took moto past 23 GB.
# Untracked, a snapshot is freed when its transaction ends (local/testkit/tests/moto_memory.rs).
_untracked(dynamodb_models.Item)
_untracked(dynamodb_models.Table)

class _TransactionSnapshots:
    """Stands in for the `copy` module inside moto's DynamoDB backend, so that the rollback
    snapshot of `TransactWriteItems` copies what the transaction can change, not the whole table.

    moto deep-copies every table a transaction names before it writes, and puts the copy back
    if the transaction is cancelled. That copy cost a transaction time in proportion to the
    table: py-spy on moto during `make chaos` put 80% of moto's CPU in it, user-api's creates
    (one transaction each) slowing down as the table grew, every other call waiting behind them.
    The snapshot here is a shallow copy of the table with its own item containers, holding deep
    copies of the items the transaction names (the only ones it can update in place) and the
    live items, unchanged, for the rest: a put, a delete or an update of a named item changes
    only the live table, so putting the snapshot back undoes all of them. Every request already
    holds the one lock, so nothing else writes the table meanwhile.
    """

    named: "dict[str, list[dict]] | None" = None

    def __getattr__(self, name):
        return getattr(copy, name)

    def deepcopy(self, value, memo=None):
        named = _TransactionSnapshots.named
        if named is None or not isinstance(value, dynamodb_models.Table):
            return copy.deepcopy(value, memo)
        return _snapshot(value, named.get(value.name, []))


def _snapshot(table, keys):
    snapshot = copy.copy(table)
    items = collections.defaultdict(dict)
    for hash_value, held in table.items.items():
        items[hash_value] = dict(held) if table.range_key_attr else held
    for key in keys:
        try:
            hash_value = dynamodb_models.DynamoType(key[table.hash_key_attr])
            if table.range_key_attr:
                range_value = dynamodb_models.DynamoType(key[table.range_key_attr])
                if range_value in items.get(hash_value, {}):
                    items[hash_value][range_value] = copy.deepcopy(items[hash_value][range_value])
            elif hash_value in items:
                items[hash_value] = copy.deepcopy(items[hash_value])
        except (KeyError, TypeError, AttributeError):
            # A key moto will refuse (it cancels the transaction before writing anything) or
            # one the snapshot cannot read: the whole table, as moto itself would copy it.
            return copy.deepcopy(table)
    snapshot.items = items
    return snapshot


def _cheap_snapshots(transact):
    def transact_write_items(self, transact_items, *args, **kwargs):
        named = collections.defaultdict(list)
        for entry in transact_items:
            for op in entry.values() if isinstance(entry, dict) else ():
                if isinstance(op, dict) and isinstance(op.get("TableName"), str):
                    named[op["TableName"]].append(op.get("Key") or op.get("Item") or {})
        _TransactionSnapshots.named = named
        try:
            return transact(self, transact_items, *args, **kwargs)
        finally:
            _TransactionSnapshots.named = None

    return transact_write_items


dynamodb_models.copy = _TransactionSnapshots()
dynamodb_models.DynamoDBBackend.transact_write_items = _cheap_snapshots(
    dynamodb_models.DynamoDBBackend.transact_write_items
)

responses.BaseResponse._dispatch = _serialised(responses.BaseResponse._dispatch)
DomainDispatcherApplication.__call__ = _with_oldest(DomainDispatcherApplication.__call__)
sqs_models.Queue.wait_for_messages = _waits_unlocked(sqs_models.Queue.wait_for_messages)

if __name__ == "__main__":
    sys.exit(main())
