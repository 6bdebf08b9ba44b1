//! Retrying transient DynamoDB failures within one invocation, before a record is reported back.
//!
//! DynamoDB answers some requests with errors that a later identical request would not meet
//! (developer guide, "Error handling with DynamoDB", Programming.Errors.html, whose table marks
//! these "OK to retry"): throttling (`ProvisionedThroughputExceededException`,
//! `ThrottlingException`, `RequestLimitExceeded`), its own faults (`InternalServerError`,
//! `ServiceUnavailable`, any 5xx) and, for transactions, a `TransactionCanceledException` whose
//! reasons say `TransactionConflict` (another request touched one of the items at the same time).
//!
//! The SDK's standard retry strategy already retries throttling and 5xx a few times inside one
//! call, but not a transaction conflict, and it gives up when its retry quota is spent. A consumer
//! that then reported the record would wait for the queue's visibility timeout (minutes) before
//! the record came back. [`Backoff::run`] retries the whole call a bounded number of times with
//! "full jitter" exponential backoff (a random wait between zero and `base * 2^n`, capped), so
//! concurrent writers that collided do not collide again in step. Everything else (a failed
//! condition, a validation error, missing permissions) is returned at once: retrying cannot help.
//!
//! Every retried call here is idempotent by construction: the writes are conditional, so a retry
//! after a write that in fact succeeded meets its own item and reports it as already done.

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

/// How often and how long to retry a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Calls in all, the first included (1 means no retry).
    pub attempts: u32,
    /// Upper bound of the first wait; doubled for each further retry.
    pub base: Duration,
    /// No wait is longer than this.
    pub cap: Duration,
}

impl Backoff {
    /// What the consumers use: 5 calls, waits drawn below 50, 100, 200 and 400 ms. At most 750 ms
    /// of waiting in all (plus the calls), far inside any consumer's timeout; enough for a
    /// collision between concurrent transactions or a short burst of throttling to pass.
    pub const CONSUMER: Backoff = Backoff {
        attempts: 5,
        base: Duration::from_millis(50),
        cap: Duration::from_secs(1),
    };

    /// The longest wait before retry number `retry` (0 for the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A random wait between zero and [`Backoff::ceiling`] ("full jitter").
    pub fn delay(&self, retry: u32) -> Duration {
        self.ceiling(retry).mul_f64(fastrand::f64())
    }

    /// The most time [`Backoff::run`] can spend waiting between calls.
    pub fn worst_case_wait(&self) -> Duration {
        (0..self.attempts.saturating_sub(1))
            .map(|r| self.ceiling(r))
            .sum()
    }

    /// Calls `call` until it succeeds, fails with an error that is not transient, or `attempts`
    /// calls have been made; returns the last result. Each retry is logged with the operation,
    /// the attempt and the error's code and message.
    pub async fn run<T, E, F, Fut>(
        &self,
        operation: &str,
        mut call: F,
    ) -> Result<T, SdkError<E, HttpResponse>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Err(error) if attempt < self.attempts && is_transient(&error) => {
                    let wait = self.delay(attempt - 1);
                    tracing::info!(
                        operation,
                        attempt,
                        wait_ms = wait.as_millis() as u64,
                        error = %aws_sdk_dynamodb::error::DisplayErrorContext(&error),
                        "transient DynamoDB failure; retrying"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }
}

/// Error codes DynamoDB documents as worth retrying.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
];

/// Whether a later identical call could succeed where this one failed.
pub fn is_transient<E>(error: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata + 'static,
{
    match error {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::ServiceError(service) => {
            if service.raw().status().is_server_error() {
                return true;
            }
            let err = service.err();
            if let Some(transaction) =
                (err as &dyn std::any::Any).downcast_ref::<TransactWriteItemsError>()
            {
                return transaction_conflicted(transaction);
            }
            err.code()
                .is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        _ => false,
    }
}

/// A cancelled transaction is worth retrying when some item conflicted with another request (or
/// was throttled) and no condition failed: a failed condition is an answer, not an accident.
fn transaction_conflicted(error: &TransactWriteItemsError) -> bool {
    match error {
        TransactWriteItemsError::TransactionCanceledException(cancel) => {
            let codes: Vec<&str> = cancel
                .cancellation_reasons()
                .iter()
                .filter_map(|reason| reason.code())
                .collect();
            !codes.contains(&"ConditionalCheckFailed")
                && codes.iter().any(|code| {
                    matches!(
                        *code,
                        "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded"
                    )
                })
        }
        other => other
            .code()
            .is_some_and(|code| TRANSIENT_CODES.contains(&code)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_then_stop_at_the_cap() {
        let backoff = Backoff {
            attempts: 10,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(500),
        };
        let ceilings: Vec<u128> = (0..5).map(|r| backoff.ceiling(r).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 500, 500]);
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_millis(500));
    }

    #[test]
    fn every_wait_is_jittered_within_its_ceiling() {
        let backoff = Backoff::CONSUMER;
        let draws: Vec<Duration> = (0..200).map(|_| backoff.delay(2)).collect();
        assert!(draws.iter().all(|d| *d <= backoff.ceiling(2)));
        // Jitter: 200 draws from a continuous range are not all the same.
        assert!(draws.iter().any(|d| *d != draws[0]));
    }

    #[test]
    fn the_consumer_policy_is_bounded() {
        assert_eq!(Backoff::CONSUMER.attempts, 5);
        assert_eq!(
            Backoff::CONSUMER.worst_case_wait(),
            Duration::from_millis(50 + 100 + 200 + 400)
        );
    }
}
