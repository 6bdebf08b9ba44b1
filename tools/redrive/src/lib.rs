//! Redrive: move messages from a dead-letter queue back to the queue they came from.
//!
//! In AWS, `aws sqs start-message-move-task --source-arn <dlq-arn>` does this server-side; this
//! tool does the same with plain SQS calls, so it also works against moto and any endpoint. Each
//! message is sent to the target **before** it is deleted from the dead-letter queue, so a crash in
//! between duplicates a message rather than losing it (consumers are idempotent).

use anyhow::{Context as _, Result, bail};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

/// Finds the one queue whose redrive policy targets `dlq_url`.
pub async fn source_queue_of(sqs: &aws_sdk_sqs::Client, dlq_url: &str) -> Result<String> {
    let out = sqs
        .list_dead_letter_source_queues()
        .queue_url(dlq_url)
        .send()
        .await
        .context("ListDeadLetterSourceQueues failed")?;
    match out.queue_urls() {
        [one] => Ok(one.clone()),
        [] => bail!("no queue uses {dlq_url} as its dead-letter queue; pass --to"),
        many => bail!(
            "several queues use {dlq_url} as their dead-letter queue ({}); pass --to",
            many.join(", ")
        ),
    }
}

/// Moves up to `max` messages (all, if `None`) from `from_url` to `to_url`; returns how many moved.
pub async fn redrive(
    sqs: &aws_sdk_sqs::Client,
    from_url: &str,
    to_url: &str,
    max: Option<usize>,
) -> Result<usize> {
    let mut moved = 0;
    loop {
        let room = max.map_or(10, |m| m.saturating_sub(moved).min(10));
        if room == 0 {
            return Ok(moved);
        }
        let received = sqs
            .receive_message()
            .queue_url(from_url)
            .max_number_of_messages(room as i32)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .message_attribute_names("All")
            .send()
            .await
            .context("ReceiveMessage on the dead-letter queue failed")?;
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            return Ok(moved);
        }
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(m.body().unwrap_or_default())
                    .set_message_attributes(m.message_attributes().cloned())
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let sent = sqs
            .send_message_batch()
            .queue_url(to_url)
            .set_entries(Some(entries))
            .send()
            .await
            .context("SendMessageBatch to the source queue failed")?;
        // Delete only what the target accepted; the rest stays in the DLQ for the next run.
        for ok in sent.successful() {
            let index: usize = ok.id().parse().context("unexpected batch entry id")?;
            let handle = messages[index].receipt_handle().unwrap_or_default();
            sqs.delete_message()
                .queue_url(from_url)
                .receipt_handle(handle)
                .send()
                .await
                .context("DeleteMessage on the dead-letter queue failed")?;
            moved += 1;
        }
        if !sent.failed().is_empty() {
            bail!(
                "{} messages could not be sent back and stay in the dead-letter queue",
                sent.failed().len()
            );
        }
    }
}
