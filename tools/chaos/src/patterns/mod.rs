//! What the chaos run sends to each pattern, and how it accounts for it afterwards.
//!
//! Each pattern has a [`Workload`]: a plan of requests fixed by the run's seed (good ones,
//! duplicates, poison, invalid, concurrent ones on one key or one e-mail), a ledger of what each
//! request got back, and an account read from moto once the stack has drained. The driver
//! (`crate::run`) decides when each request goes and which faults are on meanwhile; a workload
//! only knows its pattern's API and what the pattern promises.

mod async_invoke;
mod kinesis_stream;
mod sqs_buffer;
mod user_api;

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde_json::Value;

/// Everything a workload needs to reach its pattern.
#[derive(Debug, Clone)]
pub struct Target {
    /// The pattern's entry of the state file (`patterns.<key>`): `baseUrl`, `apis`,
    /// `credentials`, `queues`, `tables`, `streams`, `buckets`, `parameters`, `outputs`.
    pub pattern: Value,
    /// The state file's `signing` entry (SigV4 credentials for AWS_IAM APIs).
    pub signing: Value,
    /// Region of the stack.
    pub region: String,
    /// SDK configuration for moto itself, never through the fault proxy: the account reads
    /// what is really there.
    pub sdk: aws_setup::SdkConfig,
    /// HTTP client for the APIs (bounded per request; see `crate::run::REQUEST_TIMEOUT`).
    pub http: reqwest::Client,
}

/// What a planned request is meant to exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Kind {
    /// A request the pattern stores.
    Good,
    /// The same request again (same key, same body): stored once.
    Duplicate,
    /// Accepted, but the consumer cannot process it: it ends dead-lettered.
    Poison,
    /// Refused at the front door (4xx), or accepted and recorded `INVALID`.
    Invalid,
    /// One of several requests sent at once on one key (or one e-mail): conflict, order or
    /// `EMAIL_TAKEN` rules decide the outcome.
    SameKey,
}

/// What the front door answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// A 2xx with the buffer's receipt (message id, sequence number, job id).
    Accepted,
    /// An answer that acknowledges nothing (4xx or 5xx), with its status.
    Refused(u16),
    /// No answer: the connection failed or timed out (the gateway was restarting, say). The
    /// request may or may not have reached the buffer, so the account allows it either way.
    Unanswered,
}

/// One thing the account found wrong.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Problem {
    /// An accepted request with no terminal state (not stored, not dead-lettered, no status).
    Lost(String),
    /// Something written twice, or two terminal states for one request.
    Doubled(String),
    /// Something stored or dead-lettered that no request of the run sent (or that was refused).
    NotAccepted(String),
    /// A key whose stored value is not its newest accepted write (per-key order broken).
    OutOfOrder(String),
    /// A good request dead-lettered or failed although nothing about it justified that.
    UnjustifiedDeadLetter(String),
    /// An answer the pattern must never give (a 2xx for an invalid body, a 5xx for a valid one
    /// with the buffer healthy, a malformed receipt).
    WrongAnswer(String),
}

impl Problem {
    /// The problem's class, for the summary line.
    pub fn class(&self) -> &'static str {
        match self {
            Problem::Lost(_) => "lost",
            Problem::Doubled(_) => "doubled",
            Problem::NotAccepted(_) => "not-accepted",
            Problem::OutOfOrder(_) => "out-of-order",
            Problem::UnjustifiedDeadLetter(_) => "unjustified-dead-letter",
            Problem::WrongAnswer(_) => "wrong-answer",
        }
    }
}

/// The account of one pattern at the end of a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// The pattern's folder name (`sqs-buffer`).
    pub pattern: String,
    /// Requests sent.
    pub sent: u64,
    /// Requests acknowledged with the buffer's receipt.
    pub accepted: u64,
    /// Requests refused (4xx/5xx), by status.
    pub refused: BTreeMap<u16, u64>,
    /// Requests that got no answer.
    pub unanswered: u64,
    /// Terminal states found, by name (`stored`, `dead-lettered`, `invalid`, `conflict`,
    /// `email-taken`, `failed`, `archived`, `duplicate-absorbed`, `stored-unanswered`...). Their
    /// sum over the accepted requests equals `accepted` when nothing is lost.
    pub outcomes: BTreeMap<String, u64>,
    /// Requests planned, by kind (filled by the driver from [`Workload::kind`]).
    pub planned: BTreeMap<Kind, u64>,
    /// What is wrong; empty when the pattern kept its promise.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Nothing lost, doubled, unaccounted for or out of order.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Adds one to the outcome `name`.
    pub fn count(&mut self, name: &str) {
        *self.outcomes.entry(name.to_owned()).or_default() += 1;
    }

    /// Records what one request got back.
    pub fn answered(&mut self, sent: &Sent) {
        self.sent += 1;
        match sent {
            Sent::Accepted => self.accepted += 1,
            Sent::Refused(status) => *self.refused.entry(*status).or_default() += 1,
            Sent::Unanswered => self.unanswered += 1,
        }
    }
}

/// One pattern's part of the run. Every method is safe to call from many tasks at once.
pub trait Workload: Send + Sync {
    /// The pattern's folder name (`sqs-buffer`).
    fn name(&self) -> &'static str;
    /// How many requests the plan holds.
    fn len(&self) -> usize;
    /// Requests acknowledged so far (for the rate of acceptance while sending).
    fn accepted(&self) -> usize;
    /// What request `index` exercises.
    fn kind(&self, index: usize) -> Kind;
    /// Sends request `index` (each index once) to `target` and records the answer in the
    /// ledger. `target` is the pattern as the gateway describes it now: it is read again after
    /// a restart of the gateway, whose APIs may then listen on other ports.
    fn send<'a>(&'a self, target: &'a Target, index: usize) -> BoxFuture<'a, Sent>;
    /// `None` once everything accepted has reached a terminal state as far as queues, streams
    /// and statuses show; otherwise what is still in progress (for the progress line).
    fn pending<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, anyhow::Result<Option<String>>>;
    /// Reads moto's state and compares it with the ledger.
    fn account<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, anyhow::Result<Report>>;
}

/// The state-file keys of the patterns the run drives, in the order of the summary.
pub const PATTERNS: [&str; 4] = ["SqsBuffer", "UserApi", "KinesisStream", "AsyncInvoke"];

/// The workload of the pattern `key` (a state-file key of [`PATTERNS`]), with `count` requests
/// planned from `seed`.
pub fn workload(key: &str, seed: u64, count: usize) -> anyhow::Result<Box<dyn Workload>> {
    match key {
        "SqsBuffer" => Ok(Box::new(sqs_buffer::SqsBuffer::new(seed, count))),
        "UserApi" => Ok(Box::new(user_api::UserApi::new(seed, count))),
        "KinesisStream" => Ok(Box::new(kinesis_stream::KinesisStream::new(seed, count))),
        "AsyncInvoke" => Ok(Box::new(async_invoke::AsyncInvoke::new(seed, count))),
        _ => anyhow::bail!("no workload for pattern {key}"),
    }
}
