//! Stress tests of the moto operations the patterns use concurrently, at the concurrency the
//! local gateway produces (a batch of 10 records written at once by each of several consumer
//! invocations, 25 Kinesis keys at once, hundreds of API requests sent to SQS at once).
//!
//! They run against the moto that `make test` starts through `tools/moto_server.py`. Against a
//! plain `python -m moto.server`, the transaction test fails (HTTP 500 "dictionary changed size
//! during iteration", and acknowledged writes erased by a cancelled transaction's rollback), as
//! does the same-item transaction test (two transactions both pass one condition). Each test
//! asserts what AWS guarantees for the operation, so a fault of the emulator shows as a failure
//! here rather than as a lost record in an end-to-end test.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use futures::StreamExt as _;

/// Requests in flight at once: more than the gateway's heaviest burst against one service in
/// the end-to-end tests (a batch of 10 per consumer invocation, several invocations at once).
const IN_FLIGHT: usize = 48;

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

/// SDK configuration with the SDK's own retries turned off: a 500 from moto must show here as
/// the failure it is, not be hidden by a retry that happened to go well.
async fn no_retries() -> aws_setup::SdkConfig {
    testkit::sdk_config()
        .await
        .into_builder()
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .build()
}

async fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&no_retries().await)
}

async fn keys(client: &aws_sdk_dynamodb::Client, table: &str) -> BTreeSet<String> {
    testkit::scan_all(client, table)
        .await
        .iter()
        .filter_map(|i| match i.get("k") {
            Some(AttributeValue::S(k)) => Some(k.clone()),
            _ => None,
        })
        .collect()
}

fn put(table: &str, key: &str) -> Put {
    Put::builder()
        .table_name(table)
        .item("k", s(key))
        .condition_expression("attribute_not_exists(k)")
        .build()
        .expect("put")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_beside_puts_neither_fail_nor_erase_acknowledged_writes() {
    let client = dynamodb().await;
    let table = testkit::create_table(&client, "stress-tx", "k").await;
    client
        .put_item()
        .table_name(&table)
        .item("k", s("taken"))
        .send()
        .await
        .expect("seed item");
    let unexpected = Mutex::new(Vec::new());
    let acknowledged = Mutex::new(Vec::new());
    // Even calls: a transaction whose second put meets the taken item, so it is cancelled (and
    // moto rolls back); odd calls: a conditional put of a new key, which must survive.
    futures::stream::iter(0..400)
        .for_each_concurrent(IN_FLIGHT, |i| {
            let (client, table) = (&client, &table);
            let (unexpected, acknowledged) = (&unexpected, &acknowledged);
            async move {
                if i % 2 == 1 {
                    let key = format!("put-{i}");
                    match client
                        .put_item()
                        .table_name(table)
                        .item("k", s(&key))
                        .condition_expression("attribute_not_exists(k)")
                        .send()
                        .await
                    {
                        Ok(_) => acknowledged.lock().unwrap().push(key),
                        Err(e) => unexpected.lock().unwrap().push(format!(
                            "{}",
                            aws_sdk_dynamodb::error::DisplayErrorContext(e)
                        )),
                    }
                } else {
                    let result = client
                        .transact_write_items()
                        .transact_items(
                            TransactWriteItem::builder()
                                .put(put(table, &format!("tx-{i}")))
                                .build(),
                        )
                        .transact_items(
                            TransactWriteItem::builder()
                                .put(put(table, "taken"))
                                .build(),
                        )
                        .send()
                        .await;
                    let cancelled = result
                        .as_ref()
                        .err()
                        .and_then(|e| e.as_service_error())
                        .is_some_and(|e| e.is_transaction_canceled_exception());
                    if !cancelled {
                        unexpected
                            .lock()
                            .unwrap()
                            .push(format!("transaction {i}: {result:?}"));
                    }
                }
            }
        })
        .await;
    let unexpected = unexpected.into_inner().unwrap();
    assert!(
        unexpected.is_empty(),
        "{} unexpected answers, first: {:?}",
        unexpected.len(),
        unexpected.first()
    );
    let stored = keys(&client, &table).await;
    let acknowledged = acknowledged.into_inner().unwrap();
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|k| !stored.contains(*k))
        .collect();
    assert_eq!(acknowledged.len(), 200);
    assert!(
        lost.is_empty(),
        "{} acknowledged puts erased: {lost:?}",
        lost.len()
    );
    assert!(
        !stored.iter().any(|k| k.starts_with("tx-")),
        "a cancelled transaction left an item behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transactions_claiming_one_item_at_once_let_exactly_one_win() {
    let client = dynamodb().await;
    let table = testkit::create_table(&client, "stress-claim", "k").await;
    let winners = Mutex::new(Vec::new());
    let unexpected = Mutex::new(Vec::new());
    // As user-api does: the user item and a claim on a shared email item, in one transaction.
    futures::stream::iter(0..IN_FLIGHT)
        .for_each_concurrent(IN_FLIGHT, |i| {
            let (client, table, winners, unexpected) = (&client, &table, &winners, &unexpected);
            async move {
                let result = client
                    .transact_write_items()
                    .transact_items(
                        TransactWriteItem::builder()
                            .put(put(table, &format!("user-{i}")))
                            .build(),
                    )
                    .transact_items(
                        TransactWriteItem::builder()
                            .put(put(table, "email#shared"))
                            .build(),
                    )
                    .send()
                    .await;
                match result {
                    Ok(_) => winners.lock().unwrap().push(format!("user-{i}")),
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|e| e.is_transaction_canceled_exception()) => {}
                    Err(e) => unexpected.lock().unwrap().push(format!("{e:?}")),
                }
            }
        })
        .await;
    assert!(
        unexpected.lock().unwrap().is_empty(),
        "{:?}",
        unexpected.lock().unwrap()
    );
    let winners = winners.into_inner().unwrap();
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = keys(&client, &table).await;
    let expected: BTreeSet<String> = [winners[0].clone(), "email#shared".to_owned()].into();
    assert_eq!(stored, expected, "only the winner's items exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditional_puts_of_one_key_at_once_let_exactly_one_win() {
    let client = dynamodb().await;
    let table = testkit::create_table(&client, "stress-cond", "k").await;
    let outcomes: Vec<Result<(), bool>> = futures::stream::iter(0..IN_FLIGHT)
        .map(|i| {
            let (client, table) = (&client, &table);
            async move {
                client
                    .put_item()
                    .table_name(table)
                    .item("k", s("same"))
                    .item("writer", AttributeValue::N(i.to_string()))
                    .condition_expression("attribute_not_exists(k)")
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        e.as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception())
                    })
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let won = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes.iter().filter(|o| **o == Err(true)).count();
    assert_eq!((won, refused), (1, IN_FLIGHT - 1), "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn index_queries_beside_writes_always_answer_and_end_complete() {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
        Projection, ProjectionType, ScalarAttributeType,
    };
    let client = dynamodb().await;
    let table = testkit::unique("stress-gsi");
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let hash = |name: &str| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(KeyType::Hash)
            .build()
            .unwrap()
    };
    client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("k"))
        .attribute_definitions(attr("group"))
        .key_schema(hash("k"))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("byGroup")
                .key_schema(hash("group"))
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table");
    let failures = Mutex::new(Vec::new());
    futures::stream::iter(0..300)
        .for_each_concurrent(IN_FLIGHT, |i| {
            let (client, table, failures) = (&client, &table, &failures);
            async move {
                let result = if i % 3 == 0 {
                    client
                        .query()
                        .table_name(table)
                        .index_name("byGroup")
                        .key_condition_expression("#g = :g")
                        .expression_attribute_names("#g", "group")
                        .expression_attribute_values(":g", s("g"))
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("{e:?}"))
                } else {
                    client
                        .put_item()
                        .table_name(table)
                        .item("k", s(&format!("item-{i}")))
                        .item("group", s("g"))
                        .condition_expression("attribute_not_exists(k)")
                        .send()
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("{e:?}"))
                };
                if let Err(e) = result {
                    failures.lock().unwrap().push(e);
                }
            }
        })
        .await;
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:?}",
        failures.lock().unwrap().first()
    );
    let count = client
        .query()
        .table_name(&table)
        .index_name("byGroup")
        .key_condition_expression("#g = :g")
        .expression_attribute_names("#g", "group")
        .expression_attribute_values(":g", s("g"))
        .select(aws_sdk_dynamodb::types::Select::Count)
        .send()
        .await
        .expect("query")
        .count();
    assert_eq!(count, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_receives_and_deletes_at_once_lose_no_message() {
    let sqs = aws_sdk_sqs::Client::new(&no_retries().await);
    let url = sqs
        .create_queue()
        .queue_name(testkit::unique("stress-q"))
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_owned();
    let sent = Mutex::new(BTreeSet::new());
    let received = Mutex::new(HashMap::<String, u32>::new());
    let failures = Mutex::new(Vec::new());
    let total = 300;
    let senders = futures::stream::iter(0..total).for_each_concurrent(IN_FLIGHT, |i| {
        let (sqs, url, sent, failures) = (&sqs, &url, &sent, &failures);
        async move {
            match sqs
                .send_message()
                .queue_url(url)
                .message_body(format!("m{i}"))
                .send()
                .await
            {
                Ok(out) => {
                    sent.lock()
                        .unwrap()
                        .insert(out.message_id().unwrap_or_default().to_owned());
                }
                Err(e) => failures.lock().unwrap().push(format!("send: {e:?}")),
            }
        }
    });
    // Ten receivers, as the gateway's pollers do: receive up to 10, delete each, until every
    // message has come through. The bound is generous: 300 messages take a few seconds.
    let deadline = Instant::now() + Duration::from_secs(120);
    let receivers = futures::stream::iter(0..10).for_each_concurrent(10, |_| {
        let (sqs, url, sent, received, failures) = (&sqs, &url, &sent, &received, &failures);
        async move {
            while Instant::now() < deadline {
                let done = {
                    let got = received.lock().unwrap();
                    got.len() >= total && sent.lock().unwrap().iter().all(|id| got.contains_key(id))
                };
                if done {
                    return;
                }
                let batch = match sqs
                    .receive_message()
                    .queue_url(url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await
                {
                    Ok(batch) => batch,
                    Err(e) => {
                        failures.lock().unwrap().push(format!("receive: {e:?}"));
                        continue;
                    }
                };
                for message in batch.messages() {
                    let id = message.message_id().unwrap_or_default().to_owned();
                    *received.lock().unwrap().entry(id).or_default() += 1;
                    if let Err(e) = sqs
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(message.receipt_handle().unwrap_or_default())
                        .send()
                        .await
                    {
                        failures.lock().unwrap().push(format!("delete: {e:?}"));
                    }
                }
            }
        }
    });
    futures::join!(senders, receivers);
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:?}",
        failures.lock().unwrap().first()
    );
    let sent = sent.into_inner().unwrap();
    let received = received.into_inner().unwrap();
    assert_eq!(sent.len(), total);
    let missing: Vec<_> = sent
        .iter()
        .filter(|id| !received.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} sent messages never received",
        missing.len()
    );
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .expect("attributes");
    let attr = |name: aws_sdk_sqs::types::QueueAttributeName| {
        attrs
            .attributes()
            .and_then(|a| a.get(&name))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        attr(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages),
        "0"
    );
    assert_eq!(
        attr(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        "0",
        "every received message was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn puts_beside_get_records_keep_every_record_once_in_order() {
    use aws_sdk_kinesis::primitives::Blob;
    use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
    let kinesis = aws_sdk_kinesis::Client::new(&no_retries().await);
    let stream = testkit::unique("stress-s");
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(1)
        .send()
        .await
        .expect("stream");
    let shard = loop {
        let description = kinesis
            .describe_stream()
            .stream_name(&stream)
            .send()
            .await
            .expect("describe");
        let d = description.stream_description().expect("description");
        if d.stream_status() == &StreamStatus::Active {
            break d.shards()[0].shard_id().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut iterator = kinesis
        .get_shard_iterator()
        .stream_name(&stream)
        .shard_id(&shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("iterator")
        .shard_iterator()
        .map(str::to_owned);
    let acknowledged = Mutex::new(BTreeSet::new());
    let failures = Mutex::new(Vec::new());
    let total = 300;
    let writers = futures::stream::iter(0..total).for_each_concurrent(25, |i| {
        let (kinesis, stream, acknowledged, failures) =
            (&kinesis, &stream, &acknowledged, &failures);
        async move {
            match kinesis
                .put_record()
                .stream_name(stream)
                .partition_key(format!("key-{}", i % 25))
                .data(Blob::new(format!("r{i}")))
                .send()
                .await
            {
                Ok(out) => {
                    acknowledged
                        .lock()
                        .unwrap()
                        .insert(out.sequence_number().to_owned());
                }
                Err(e) => failures.lock().unwrap().push(format!("put: {e:?}")),
            }
        }
    });
    // The reader polls as the gateway's shard poller does, while the writers write.
    let read = Mutex::new(Vec::<String>::new());
    let deadline = Instant::now() + Duration::from_secs(120);
    let reader = async {
        while Instant::now() < deadline && read.lock().unwrap().len() < total {
            let Some(current) = iterator.take() else {
                break;
            };
            match kinesis
                .get_records()
                .shard_iterator(&current)
                .limit(100)
                .send()
                .await
            {
                Ok(out) => {
                    read.lock()
                        .unwrap()
                        .extend(out.records().iter().map(|r| r.sequence_number().to_owned()));
                    iterator = out.next_shard_iterator().map(str::to_owned);
                }
                Err(e) => {
                    failures.lock().unwrap().push(format!("get: {e:?}"));
                    iterator = Some(current);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    futures::join!(writers, reader);
    assert!(
        failures.lock().unwrap().is_empty(),
        "{:?}",
        failures.lock().unwrap().first()
    );
    let read = read.into_inner().unwrap();
    let acknowledged = acknowledged.into_inner().unwrap();
    assert_eq!(
        acknowledged.len(),
        total,
        "every put got its own sequence number"
    );
    assert_eq!(read.len(), total, "every record read exactly once");
    let numbers: Vec<u128> = read.iter().map(|n| n.parse().expect("numeric")).collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "records arrive in sequence order"
    );
    assert_eq!(read.into_iter().collect::<BTreeSet<_>>(), acknowledged);
}
