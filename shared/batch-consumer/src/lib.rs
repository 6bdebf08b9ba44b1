//! Record-by-record processing of event-source batches, with partial batch responses.
//!
//! Lambda's SQS event source retries a whole batch when the function fails, unless the mapping
//! has `FunctionResponseTypes: [ReportBatchItemFailures]` and the function lists the records that
//! failed. [`process_sqs_batch`] runs a per-record function over a batch **concurrently, with a
//! bound**, and turns its failures into that list, so one bad record neither fails nor delays its
//! neighbours. An empty or unknown `itemIdentifier` would make Lambda fail the whole batch, so a
//! record without a message id fails the batch explicitly instead.
//!
//! Every log line about one record carries the record's `apiRequestId` when it has one
//! ([`api_request`]): the id of the API Gateway request the record came from.

pub mod api_request;
pub mod kinesis;

use std::error::Error;
use std::future::Future;

pub use aws_setup::ErrorChain;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt as _;

/// Default bound on records processed at once: the SQS maximum receive size, so a default batch
/// of 10 costs about one downstream round trip.
pub const DEFAULT_CONCURRENCY: usize = 10;

/// A batch that cannot be answered record by record.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// A record has no message id, so its failure could not be reported on its own.
    #[error("record {index} of the batch has no messageId")]
    MissingMessageId {
        /// Position of the record in the batch.
        index: usize,
    },
}

/// Runs `handle` on every record of `event`, at most `concurrency` at a time, and returns the
/// partial batch response listing the records whose handling failed.
///
/// Each failure is logged with the message id, the record's `apiRequestId` when it carries one
/// ([`api_request::sqs_api_request_id`]) and the error's whole cause chain (never the body).
pub async fn process_sqs_batch<F, Fut, E>(
    event: SqsEvent,
    concurrency: usize,
    handle: F,
) -> Result<SqsBatchResponse, BatchError>
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Error + 'static,
{
    let mut records = Vec::with_capacity(event.records.len());
    for (index, record) in event.records.into_iter().enumerate() {
        let id = record
            .message_id
            .clone()
            .filter(|id| !id.is_empty())
            .ok_or(BatchError::MissingMessageId { index })?;
        let api_request_id = api_request::sqs_api_request_id(&record).map(str::to_owned);
        records.push((id, api_request_id, record));
    }
    let handle = &handle;
    type Outcome<E> = (usize, String, Option<String>, Result<(), E>);
    let mut outcomes: Vec<Outcome<E>> = futures::stream::iter(records.into_iter().enumerate())
        .map(|(index, (id, api_request_id, record))| async move {
            (index, id, api_request_id, handle(record).await)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    outcomes.sort_by_key(|(index, ..)| *index);
    let mut response = SqsBatchResponse::default();
    for (_, id, api_request_id, outcome) in outcomes {
        if let Err(error) = outcome {
            tracing::warn!(
                message_id = %id,
                apiRequestId = api_request_id.as_deref(),
                error = %ErrorChain(&error),
                "record failed; reported for retry"
            );
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn event(ids: &[&str]) -> SqsEvent {
        let records: Vec<_> = ids
            .iter()
            .map(|id| serde_json::json!({"messageId": id, "body": format!("body-{id}")}))
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).expect("valid event")
    }

    #[tokio::test]
    async fn failures_are_reported_by_message_id_in_batch_order() {
        let response = process_sqs_batch(event(&["a", "b", "c", "d"]), 4, |m| async move {
            match m.message_id.as_deref() {
                Some("b") | Some("d") => Err(std::io::Error::other("boom")),
                _ => Ok(()),
            }
        })
        .await
        .expect("batch answered");
        let ids: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(ids, ["b", "d"]);
    }

    #[tokio::test]
    async fn the_failure_line_carries_the_api_request_id_of_the_record() {
        let mut batch = event(&["a", "b"]);
        batch.records[0].message_attributes = serde_json::from_value(serde_json::json!({
            "apiRequestId": {"stringValue": "req-a", "dataType": "String",
                             "stringListValues": [], "binaryListValues": []}
        }))
        .expect("attributes");
        let (logs, _guard) = aws_setup::CapturedLogs::start();
        process_sqs_batch(batch, 2, |_| async { Err(std::io::Error::other("boom")) })
            .await
            .expect("batch answered");
        let lines: Vec<serde_json::Value> = logs
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        let fields = |id: &str| {
            lines
                .iter()
                .map(|l| &l["fields"])
                .find(|f| f["message_id"] == id)
                .unwrap_or_else(|| panic!("no line for {id}: {lines:?}"))
                .clone()
        };
        assert_eq!(fields("a")["apiRequestId"], "req-a");
        assert!(
            fields("b").get("apiRequestId").is_none(),
            "absent when the record carries none"
        );
    }

    #[test]
    fn an_error_chain_shows_every_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("users table write failed")]
        struct Outer(#[source] std::io::Error);
        let error = Outer(std::io::Error::other(
            "InternalServerError: injected (HTTP 500)",
        ));
        assert_eq!(
            ErrorChain(&error).to_string(),
            "users table write failed: InternalServerError: injected (HTTP 500)"
        );
    }

    #[tokio::test]
    async fn all_successes_give_an_empty_failure_list() {
        let response = process_sqs_batch(event(&["a", "b"]), 2, |_| async {
            Ok::<_, std::io::Error>(())
        })
        .await
        .expect("batch answered");
        assert!(response.batch_item_failures.is_empty());
    }

    #[tokio::test]
    async fn record_without_message_id_fails_the_batch() {
        let mut batch = event(&["a", "b"]);
        batch.records[1].message_id = None;
        let result = process_sqs_batch(batch, 2, |_| async { Ok::<_, std::io::Error>(()) }).await;
        assert!(matches!(
            result,
            Err(BatchError::MissingMessageId { index: 1 })
        ));
    }

    #[tokio::test]
    async fn records_run_concurrently_up_to_the_bound() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let ids: Vec<String> = (0..12).map(|i| i.to_string()).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        process_sqs_batch(event(&ids), 4, |_| async {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(())
        })
        .await
        .expect("batch answered");
        assert_eq!(peak.load(Ordering::SeqCst), 4);
    }
}
