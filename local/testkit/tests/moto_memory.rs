//! The moto launcher (`tools/moto_server.py`) keeps no copy of a table per transaction, and its
//! cheaper rollback snapshot still undoes a cancelled transaction whole.
//!
//! moto's models track every instance they ever create, and DynamoDB's `TransactWriteItems`
//! deep-copies each table it touches as its rollback snapshot: without the launcher's fix every
//! transaction kept a whole table alive, so moto's memory grew with transactions x table size
//! (past 23 GB in a `make chaos` run). The check runs moto in-process in the project's
//! virtualenv, with the launcher's patches imported, and counts DynamoDB items alive after the
//! transactions: a count, not a timing or a memory reading another test could disturb.

#![allow(clippy::expect_used, clippy::unwrap_used)]

const CHECK: &str = r#"
import gc, os, sys
os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
sys.path.insert(0, "tools")
import moto_server  # noqa: F401 (its patches)
import boto3
from moto import mock_aws
from moto.dynamodb.models.dynamo_type import Item
from moto.dynamodb.models.table import Table

with mock_aws():
    client = boto3.client("dynamodb")
    client.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(300):
        client.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"S": f"k{i}"}}}}])
    cancelled = 0
    for i in range(50):
        try:
            client.transact_write_items(TransactItems=[{"Put": {
                "TableName": "t", "Item": {"pk": {"S": f"k{i}"}},
                "ConditionExpression": "attribute_not_exists(pk)"}}])
        except client.exceptions.TransactionCanceledException:
            cancelled += 1
    # A cancelled transaction is undone whole: an update in place, a delete and a put before the
    # condition that fails (the launcher's snapshot holds copies of exactly these items).
    try:
        client.transact_write_items(TransactItems=[
            {"Update": {"TableName": "t", "Key": {"pk": {"S": "k1"}},
                        "UpdateExpression": "SET n = :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}}}},
            {"Delete": {"TableName": "t", "Key": {"pk": {"S": "k2"}}}},
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "new"}}}},
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "k3"}},
                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ])
    except client.exceptions.TransactionCanceledException:
        cancelled += 1
    get = lambda key: client.get_item(TableName="t", Key={"pk": {"S": key}}).get("Item")
    undone = get("k1") == {"pk": {"S": "k1"}} and get("k2") is not None and get("new") is None
    stored = len(client.scan(TableName="t")["Items"])
    gc.collect()
    items = sum(isinstance(o, Item) for o in gc.get_objects())
    tables = sum(isinstance(o, Table) for o in gc.get_objects())
    print(f"stored={stored} cancelled={cancelled} undone={undone} items={items} tables={tables}")
"#;

#[test]
fn transactions_leave_no_copy_of_their_table_behind() {
    let root = testkit::repo_root();
    let python = root.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "no virtualenv at {}: run `make venv`",
        python.display()
    );
    let output = std::process::Command::new(&python)
        .current_dir(&root)
        .args(["-c", CHECK])
        .output()
        .expect("run the check in the virtualenv");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    // 300 items stored, the 50 conditional puts on taken keys and the mixed transaction
    // cancelled and undone, and alive: the 300 items and the one table. With instance tracking
    // on, the snapshots of 351 transactions keep about 60,000 items and 352 tables alive.
    assert!(
        text.contains("stored=300 cancelled=51 undone=True items=300 tables=1"),
        "{text}"
    );
}
