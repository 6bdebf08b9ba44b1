//! Function logs and API access logs, kept where CloudWatch Logs keeps them.
//!
//! Every line a function's execution environment writes (its stdout and stderr, and Lambda's own
//! `START` / `END` / `REPORT` lines) and every access log line an API renders goes through one
//! [`Sink`], which
//! - prints it on the gateway's stderr, prefixed with the function's or the API's id, as the
//!   gateway always printed function output;
//! - offers it to every subscriber ([`subscribe`]): the alarm evaluator reads the functions' EMF
//!   documents from there;
//! - once [`Sink::ship_to`] was called, ships it to moto's CloudWatch Logs, to its log group and
//!   stream (both created when missing), so `aws logs filter-log-events` and the tests find it
//!   where AWS keeps it: a function's group is `LoggingConfig.LogGroup`, else
//!   `/aws/lambda/<name>`; an API's is its stage's access log destination.
//!
//! Shipping never holds the gateway up and never grows without bound: [`Sink::send`] only queues
//! the line, and one task of its own batches the queue into `PutLogEvents` calls. The queue is
//! bounded in bytes ([`Shipping::max_queued_bytes`]); when moto is slow or refuses, lines beyond
//! the budget are dropped and counted, never waited for, and a batch moto refuses is tried
//! [`Shipping::attempts`] times and then dropped with a warning. A panic in the task is reported
//! and the task started again ([`crate::tasks::supervise`]).
//!
//! `PutLogEvents` limits a batch to 10,000 events and 1,048,576 bytes, counted as each message's
//! UTF-8 bytes plus 26; its events must be in chronological order, and each may be at most 256 KB
//! (CloudWatch Logs API reference, PutLogEvents). Batches are cut to fit, and a longer line is cut
//! at [`MAX_EVENT_BYTES`] (for every reader, so subscribers see what CloudWatch keeps).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use tokio::sync::{broadcast, mpsc};

/// What `PutLogEvents` counts for each event besides its message's bytes.
pub const EVENT_OVERHEAD_BYTES: usize = 26;

/// The most bytes of one event (256 KB, overhead included).
pub const MAX_EVENT_BYTES: usize = 256 * 1024 - EVENT_OVERHEAD_BYTES;

/// The most events of one `PutLogEvents` call.
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// The most bytes of one `PutLogEvents` call (messages plus their overhead).
pub const MAX_BATCH_BYTES: usize = 1_048_576;

/// How many lines a subscriber may fall behind before it misses some (it then receives
/// [`broadcast::error::RecvError::Lagged`] with the number missed, and goes on from the oldest
/// line still held).
pub const SUBSCRIBER_BACKLOG: usize = 4096;

/// One line of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Its log group: the function's (`/aws/lambda/<name>`, or its `LoggingConfig.LogGroup`) or
    /// the API stage's access log group.
    pub group: String,
    /// Its log stream in the group: the execution environment's
    /// (`2026/01/31/[$LATEST]<32 hex digits>`, as `AWS_LAMBDA_LOG_STREAM_NAME` names it), or the
    /// API's.
    pub stream: String,
    /// The function's id (stack path and logical id, `Orders.ConsumerFunction`) when the line is
    /// a function's output or Lambda's line about it; `None` for an access log line.
    pub function: Option<String>,
    /// What the gateway prints before it, in brackets: the function's or the API's id.
    pub label: String,
    /// The text (no line break at its end), at most [`MAX_EVENT_BYTES`].
    pub text: String,
    /// When it was written: milliseconds since the epoch.
    pub timestamp: i64,
}

impl Line {
    /// A line a function (`id`) wrote to `stream` of `group`, or Lambda wrote about it.
    pub fn function(id: &str, group: &str, stream: &str, text: String) -> Self {
        Self::new(group, stream, Some(id.to_owned()), id.to_owned(), text)
    }

    /// An access log line of the API `api` (its id, for the console).
    pub fn access(api: &str, group: &str, stream: &str, text: String) -> Self {
        Self::new(group, stream, None, format!("{api} access log"), text)
    }

    fn new(
        group: &str,
        stream: &str,
        function: Option<String>,
        label: String,
        text: String,
    ) -> Self {
        let mut text = text;
        truncate(&mut text, MAX_EVENT_BYTES);
        Self {
            group: group.to_owned(),
            stream: stream.to_owned(),
            function,
            label,
            text,
            timestamp: now_millis(),
        }
    }

    /// What the line costs in a `PutLogEvents` batch.
    fn cost(&self) -> usize {
        self.text.len() + EVENT_OVERHEAD_BYTES
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
fn truncate(text: &mut String, max: usize) {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

/// How lines are shipped to CloudWatch Logs.
#[derive(Debug, Clone)]
pub struct Shipping {
    /// How long the shipper gathers lines after the first of a batch before it sends them.
    pub batch_wait: Duration,
    /// The longest one call to CloudWatch Logs may take before it counts as failed.
    pub call_timeout: Duration,
    /// How many times a batch is tried before it is dropped.
    pub attempts: u32,
    /// The most bytes of lines waiting to be shipped; beyond them, new lines are not shipped.
    pub max_queued_bytes: usize,
}

impl Default for Shipping {
    /// A batch every 200 ms at most; a call may take 10 s (moto serialises its requests, and
    /// under the tests' load one can wait seconds for its turn); three tries; 16 MiB of lines
    /// waiting (tens of thousands of lines, far more than the patterns write in a second).
    fn default() -> Self {
        Self {
            batch_wait: Duration::from_millis(200),
            call_timeout: Duration::from_secs(10),
            attempts: 3,
            max_queued_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Where the lines go: the console, the subscribers, and CloudWatch Logs once shipping started.
/// Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Sink {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    print: bool,
    subscribers: broadcast::Sender<Arc<Line>>,
    shipper: OnceLock<(mpsc::UnboundedSender<Arc<Line>>, usize)>,
    counts: Arc<Counts>,
    /// Each function's most recently started environment's stream, for Lambda's own lines.
    streams: Mutex<HashMap<String, String>>,
}

#[derive(Debug, Default)]
struct Counts {
    queued_bytes: AtomicUsize,
    dropped: AtomicU64,
    shipped: AtomicU64,
}

static GLOBAL: OnceLock<Sink> = OnceLock::new();

/// The gateway's sink. There is one per process, as there is one stderr: function output is read
/// by tasks deep inside the function runtime ([`crate::functions::environment`]), and the one
/// sink lets them, the pool's `REPORT` lines and the APIs write to the same place without a
/// handle threaded through every caller. It prints and broadcasts from the start, and ships once
/// [`Sink::ship_to`] was called (at the stack's start, [`crate::run::start`]).
pub fn global() -> &'static Sink {
    GLOBAL.get_or_init(Sink::new)
}

/// Makes `sink` the process's sink ([`global`]), for a program that runs execution environments
/// without printing their output (the bench, which reads it through [`subscribe`]). It must come
/// before anything uses [`global`]; false when the sink was already set.
pub fn set_global(sink: Sink) -> bool {
    GLOBAL.set(sink).is_ok()
}

/// Every line the gateway's sink receives from now on (see [`Line`]): function output with
/// [`Line::function`] set, access log lines without. A subscriber that falls more than
/// [`SUBSCRIBER_BACKLOG`] lines behind misses the oldest (`RecvError::Lagged`) and goes on.
///
/// ```no_run
/// # async fn evaluator() {
/// let mut lines = local_gateway::logs::subscribe();
/// while let Ok(line) = lines.recv().await {
///     if line.function.is_some() && line.text.contains("\"_aws\"") {
///         // an EMF document of a function
///     }
/// }
/// # }
/// ```
pub fn subscribe() -> broadcast::Receiver<Arc<Line>> {
    global().subscribe()
}

impl Default for Sink {
    fn default() -> Self {
        Self::new()
    }
}

impl Sink {
    /// A sink that prints and broadcasts; it ships once [`Sink::ship_to`] is called.
    pub fn new() -> Self {
        Self::with_printing(true)
    }

    /// A sink that does not print (for tests that send many lines).
    pub fn quiet() -> Self {
        Self::with_printing(false)
    }

    fn with_printing(print: bool) -> Self {
        let (subscribers, _) = broadcast::channel(SUBSCRIBER_BACKLOG);
        Self {
            inner: Arc::new(Inner {
                print,
                subscribers,
                shipper: OnceLock::new(),
                counts: Arc::new(Counts::default()),
                streams: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Every line sent from now on (see [`subscribe`]).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Line>> {
        self.inner.subscribers.subscribe()
    }

    /// Starts shipping to CloudWatch Logs through `client`, on a task of its own (so it needs a
    /// Tokio runtime). `false` when this sink already ships (the first call decides).
    pub fn ship_to(&self, client: aws_sdk_cloudwatchlogs::Client, options: Shipping) -> bool {
        let (sender, receiver) = mpsc::unbounded_channel();
        if self
            .inner
            .shipper
            .set((sender, options.max_queued_bytes))
            .is_err()
        {
            return false;
        }
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let counts = self.inner.counts.clone();
        crate::tasks::supervise("log shipper".into(), move || {
            let (client, receiver, counts, options) = (
                client.clone(),
                receiver.clone(),
                counts.clone(),
                options.clone(),
            );
            async move {
                // The receiver outlives a panicked run: the restarted one goes on with the queue.
                let mut receiver = receiver.lock().await;
                ship(&client, &mut receiver, &counts, &options).await;
            }
        });
        true
    }

    /// Prints `line`, offers it to the subscribers and queues it for CloudWatch Logs. Never waits.
    pub fn send(&self, line: Line) {
        if self.inner.print {
            eprintln!("[{}] {}", line.label, line.text);
        }
        let line = Arc::new(line);
        // No subscriber is no error.
        let _ = self.inner.subscribers.send(line.clone());
        let Some((shipper, budget)) = self.inner.shipper.get() else {
            return;
        };
        if line.text.is_empty() {
            return; // CloudWatch Logs keeps no empty event
        }
        let cost = line.cost();
        let counts = &self.inner.counts;
        let queued = counts.queued_bytes.fetch_add(cost, Ordering::AcqRel);
        if queued + cost > *budget || shipper.send(line).is_err() {
            counts.queued_bytes.fetch_sub(cost, Ordering::AcqRel);
            counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Remembers `stream` as the stream of the environment of function `id` that started last:
    /// Lambda's own lines about the function ([`Sink::platform`]) go there.
    pub fn environment_started(&self, id: &str, stream: &str) {
        if let Ok(mut streams) = self.inner.streams.lock() {
            streams.insert(id.to_owned(), stream.to_owned());
        }
    }

    /// Sends a line Lambda writes about function `id` (`START`, `END`, `REPORT`, `INIT_REPORT`)
    /// to `group`, in the stream of the function's most recently started environment (Lambda
    /// writes them in the stream of the environment that ran the invocation; the pool does not
    /// say which one did, so with several environments at once a line can land in a sibling's
    /// stream of the same group).
    pub fn platform(&self, id: &str, group: &str, text: &str) {
        let stream = self
            .inner
            .streams
            .lock()
            .ok()
            .and_then(|s| s.get(id).cloned())
            .unwrap_or_else(|| "platform".to_owned());
        self.send(Line::function(id, group, &stream, text.to_owned()));
    }

    /// Lines not shipped so far because the queue was full, and lines shipped.
    pub fn counts(&self) -> (u64, u64) {
        let counts = &self.inner.counts;
        (
            counts.dropped.load(Ordering::Relaxed),
            counts.shipped.load(Ordering::Relaxed),
        )
    }
}

/// Groups and streams known to exist in CloudWatch Logs (at most [`Created::CAPACITY`] of each,
/// then forgotten: creating one again only meets `ResourceAlreadyExistsException`).
#[derive(Debug, Default)]
struct Created {
    groups: HashSet<String>,
    streams: HashSet<(String, String)>,
}

impl Created {
    const CAPACITY: usize = 10_000;

    fn has(&self, group: &str, stream: &str) -> bool {
        self.streams
            .contains(&(group.to_owned(), stream.to_owned()))
    }

    fn remember(&mut self, group: &str, stream: &str) {
        if self.streams.len() >= Self::CAPACITY {
            self.streams.clear();
        }
        if self.groups.len() >= Self::CAPACITY {
            self.groups.clear();
        }
        self.groups.insert(group.to_owned());
        self.streams.insert((group.to_owned(), stream.to_owned()));
    }

    fn forget(&mut self, group: &str, stream: &str) {
        self.groups.remove(group);
        self.streams.remove(&(group.to_owned(), stream.to_owned()));
    }
}

/// Reports failures at most once per [`Warnings::EVERY`], with how many it held back.
#[derive(Debug, Default)]
struct Warnings {
    last: Option<Instant>,
    held: u64,
    dropped_reported: u64,
}

impl Warnings {
    const EVERY: Duration = Duration::from_secs(10);

    fn due(&mut self) -> bool {
        let due = self.last.is_none_or(|at| at.elapsed() >= Self::EVERY);
        if due {
            self.last = Some(Instant::now());
        } else {
            self.held += 1;
        }
        due
    }

    fn failed(&mut self, group: &str, stream: &str, lines: usize, error: &str) {
        if self.due() {
            let held = std::mem::take(&mut self.held);
            tracing::warn!(
                group,
                stream,
                lines,
                held_back_warnings = held,
                error,
                "log lines not shipped to CloudWatch Logs"
            );
        }
    }

    fn dropped(&mut self, total: u64) {
        if total > self.dropped_reported && self.due() {
            tracing::warn!(
                dropped = total - self.dropped_reported,
                "log lines not shipped: CloudWatch Logs did not keep up and the queue was full"
            );
            self.dropped_reported = total;
        }
    }
}

/// The shipper's loop: a batch at a time, until every sender is gone.
async fn ship(
    client: &aws_sdk_cloudwatchlogs::Client,
    receiver: &mut mpsc::UnboundedReceiver<Arc<Line>>,
    counts: &Counts,
    options: &Shipping,
) {
    let mut created = Created::default();
    let mut warnings = Warnings::default();
    loop {
        let Some(first) = receiver.recv().await else {
            return;
        };
        let mut bytes = first.cost();
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + options.batch_wait;
        let mut closed = false;
        while batch.len() < MAX_BATCH_EVENTS && bytes < MAX_BATCH_BYTES {
            match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Ok(Some(line)) => {
                    bytes += line.cost();
                    batch.push(line);
                }
                Ok(None) => {
                    closed = true;
                    break;
                }
                Err(_) => break,
            }
        }
        for ((group, stream), lines) in by_stream(batch) {
            for chunk in chunks(&lines) {
                match put(client, &group, &stream, chunk, &mut created, options).await {
                    Ok(()) => {
                        counts
                            .shipped
                            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    }
                    Err(error) => warnings.failed(&group, &stream, chunk.len(), &error),
                }
            }
        }
        // Only now is their room in the queue free: the batch in hand counts against the budget.
        counts.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        warnings.dropped(counts.dropped.load(Ordering::Relaxed));
        if closed {
            return;
        }
    }
}

/// The batch's lines by group and stream, each stream's lines in chronological order (stable:
/// lines of one millisecond keep the order they were sent in).
fn by_stream(batch: Vec<Arc<Line>>) -> BTreeMap<(String, String), Vec<Arc<Line>>> {
    let mut out: BTreeMap<(String, String), Vec<Arc<Line>>> = BTreeMap::new();
    for line in batch {
        out.entry((line.group.clone(), line.stream.clone()))
            .or_default()
            .push(line);
    }
    for lines in out.values_mut() {
        lines.sort_by_key(|l| l.timestamp);
    }
    out
}

/// `lines` cut into runs that fit one `PutLogEvents` call.
fn chunks(lines: &[Arc<Line>]) -> Vec<&[Arc<Line>]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        let cost = line.cost();
        if i > start && (i - start >= MAX_BATCH_EVENTS || bytes + cost > MAX_BATCH_BYTES) {
            out.push(&lines[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += cost;
    }
    if start < lines.len() {
        out.push(&lines[start..]);
    }
    out
}

/// Creates `group` and `stream` unless they exist.
async fn ensure(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
    created: &Created,
    options: &Shipping,
) -> Result<(), String> {
    use aws_sdk_cloudwatchlogs::error::DisplayErrorContext;
    if !created.groups.contains(group) {
        let call = client.create_log_group().log_group_name(group).send();
        match tokio::time::timeout(options.call_timeout, call).await {
            Ok(Ok(_)) => {}
            Ok(Err(e))
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
            Ok(Err(e)) => return Err(format!("CreateLogGroup: {}", DisplayErrorContext(&e))),
            Err(_) => {
                return Err(format!(
                    "CreateLogGroup: no answer within {:?}",
                    options.call_timeout
                ));
            }
        }
    }
    let call = client
        .create_log_stream()
        .log_group_name(group)
        .log_stream_name(stream)
        .send();
    match tokio::time::timeout(options.call_timeout, call).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e))
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_already_exists_exception()) =>
        {
            Ok(())
        }
        Ok(Err(e)) => Err(format!("CreateLogStream: {}", DisplayErrorContext(&e))),
        Err(_) => Err(format!(
            "CreateLogStream: no answer within {:?}",
            options.call_timeout
        )),
    }
}

/// Ships one chunk, creating its group and stream when needed, at most `options.attempts` times.
async fn put(
    client: &aws_sdk_cloudwatchlogs::Client,
    group: &str,
    stream: &str,
    lines: &[Arc<Line>],
    created: &mut Created,
    options: &Shipping,
) -> Result<(), String> {
    use aws_sdk_cloudwatchlogs::error::DisplayErrorContext;
    let events: Vec<InputLogEvent> = lines
        .iter()
        .filter_map(|l| {
            InputLogEvent::builder()
                .timestamp(l.timestamp)
                .message(l.text.clone())
                .build()
                .ok()
        })
        .collect();
    let mut last = String::from("not tried");
    for attempt in 0..options.attempts.max(1) {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100) * 2u32.pow(attempt.min(6))).await;
        }
        if !created.has(group, stream) {
            if let Err(error) = ensure(client, group, stream, created, options).await {
                last = error;
                continue;
            }
            created.remember(group, stream);
        }
        let call = client
            .put_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .set_log_events(Some(events.clone()))
            .send();
        match tokio::time::timeout(options.call_timeout, call).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => {
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception())
                {
                    // Deleted behind our back (or moto restarted): create it again.
                    created.forget(group, stream);
                }
                last = format!("PutLogEvents: {}", DisplayErrorContext(&e));
            }
            Err(_) => {
                last = format!("PutLogEvents: no answer within {:?}", options.call_timeout);
            }
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(group: &str, stream: &str, text: &str, timestamp: i64) -> Arc<Line> {
        let mut line = Line::function("F", group, stream, text.to_owned());
        line.timestamp = timestamp;
        Arc::new(line)
    }

    #[test]
    fn a_line_longer_than_an_event_is_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_EVENT_BYTES);
        let line = Line::function("F", "g", "s", long);
        assert!(line.text.len() <= MAX_EVENT_BYTES);
        assert!(line.text.len() > MAX_EVENT_BYTES - 2);
        assert!(line.text.chars().all(|c| c == 'é'));
    }

    #[test]
    fn batches_are_split_by_stream_and_ordered_in_time() {
        let batch = vec![
            line("g", "b", "late", 3),
            line("g", "a", "one", 2),
            line("g", "b", "early", 1),
            line("h", "a", "other group", 1),
        ];
        let grouped = by_stream(batch);
        let texts: Vec<(String, Vec<String>)> = grouped
            .iter()
            .map(|((g, s), lines)| {
                (
                    format!("{g}/{s}"),
                    lines.iter().map(|l| l.text.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            texts,
            [
                ("g/a".to_owned(), vec!["one".to_owned()]),
                (
                    "g/b".to_owned(),
                    vec!["early".to_owned(), "late".to_owned()]
                ),
                ("h/a".to_owned(), vec!["other group".to_owned()]),
            ]
        );
    }

    #[test]
    fn chunks_respect_put_log_events_count_and_byte_limits() {
        let many: Vec<Arc<Line>> = (0..MAX_BATCH_EVENTS + 5)
            .map(|i| line("g", "s", "x", i as i64))
            .collect();
        let sizes: Vec<usize> = chunks(&many).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [MAX_BATCH_EVENTS, 5]);

        let big = "y".repeat(MAX_EVENT_BYTES);
        let large: Vec<Arc<Line>> = (0..9).map(|i| line("g", "s", &big, i)).collect();
        for chunk in chunks(&large) {
            let bytes: usize = chunk.iter().map(|l| l.cost()).sum();
            assert!(bytes <= MAX_BATCH_BYTES, "{bytes}");
        }
        assert_eq!(
            chunks(&large).iter().map(|c| c.len()).sum::<usize>(),
            9,
            "no line lost"
        );
        assert!(chunks(&[]).is_empty());
    }

    #[test]
    fn lines_reach_every_subscriber_and_an_unshipped_sink_queues_nothing() {
        let sink = Sink::quiet();
        let mut first = sink.subscribe();
        let mut second = sink.subscribe();
        sink.send(Line::access("Api", "g", "s", "one".into()));
        sink.platform("F", "/aws/lambda/f", "START RequestId: r");
        let a = first.try_recv().expect("line");
        assert_eq!((a.function.as_deref(), a.text.as_str()), (None, "one"));
        assert_eq!(second.try_recv().expect("line").label, "Api access log");
        let platform = first.try_recv().expect("platform line");
        assert_eq!(platform.function.as_deref(), Some("F"));
        assert_eq!(platform.stream, "platform", "no environment started yet");
        assert_eq!(sink.counts(), (0, 0));
        assert_eq!(sink.inner.counts.queued_bytes.load(Ordering::Relaxed), 0);
    }

    /// A stand-in for CloudWatch Logs that refuses, stalls or accepts, as the test says, and
    /// counts the calls it saw, the `PutLogEvents` among them, and the events it accepted.
    #[derive(Debug, Default)]
    struct Fake {
        /// 0: accept, 1: refuse (400), 2: answer only once `release` is notified (a stall that
        /// outlasts any call timeout, however slow the machine).
        mode: std::sync::atomic::AtomicU8,
        release: tokio::sync::Notify,
        calls: AtomicU64,
        puts: AtomicU64,
        accepted: AtomicU64,
    }

    async fn fake_logs(fake: Arc<Fake>) -> aws_sdk_cloudwatchlogs::Client {
        use axum::http::{HeaderMap, StatusCode};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("port");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
            let fake = fake.clone();
            async move {
                let target = headers
                    .get("x-amz-target")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let is_put = target.ends_with("PutLogEvents");
                fake.calls.fetch_add(1, Ordering::SeqCst);
                if is_put {
                    fake.puts.fetch_add(1, Ordering::SeqCst);
                }
                let json = [("content-type", "application/x-amz-json-1.1")];
                match fake.mode.load(Ordering::SeqCst) {
                    1 => (
                        StatusCode::BAD_REQUEST,
                        json,
                        r#"{"__type":"InvalidParameterException","message":"refused by the test"}"#
                            .to_owned(),
                    ),
                    2 if is_put => {
                        fake.release.notified().await;
                        (StatusCode::OK, json, "{}".to_owned())
                    }
                    _ => {
                        if is_put {
                            let events = serde_json::from_str::<serde_json::Value>(&body)
                                .ok()
                                .and_then(|b| b["logEvents"].as_array().map(Vec::len))
                                .unwrap_or(0);
                            fake.accepted.fetch_add(events as u64, Ordering::SeqCst);
                        }
                        (StatusCode::OK, json, "{}".to_owned())
                    }
                }
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let sdk = aws_setup::load_with_endpoint(&endpoint, Some("us-east-1")).await;
        let config = aws_sdk_cloudwatchlogs::config::Builder::from(&sdk)
            .retry_config(aws_sdk_cloudwatchlogs::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_cloudwatchlogs::Client::from_conf(config)
    }

    /// Waits for `condition`, polling. The bound only decides how long a broken run takes to
    /// fail: each condition needs a few local HTTP calls and, after a failure, the shipper's
    /// backoff (under a second), so a minute is far beyond any stall of a loaded machine.
    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_refusing_cloudwatch_never_holds_up_senders_and_the_queue_stays_within_its_budget() {
        let fake = Arc::new(Fake::default());
        fake.mode.store(1, Ordering::SeqCst);
        let sink = Sink::quiet();
        let budget = 10_000;
        sink.ship_to(
            fake_logs(fake.clone()).await,
            Shipping {
                batch_wait: Duration::from_millis(10),
                call_timeout: Duration::from_secs(5),
                attempts: 2,
                max_queued_bytes: budget,
            },
        );
        let mut subscriber = sink.subscribe();
        // 1,000 lines of 100 bytes: ten times the budget, sent without awaiting anything.
        for i in 0..1000 {
            sink.send(Line::function(
                "F",
                "/aws/lambda/f",
                "s",
                format!("{i:0>100}"),
            ));
            assert!(
                sink.inner.counts.queued_bytes.load(Ordering::SeqCst) <= budget,
                "the queue never holds more than its budget"
            );
        }
        let (dropped, shipped) = sink.counts();
        assert!(dropped > 0, "lines beyond the budget are dropped");
        assert_eq!(shipped, 0);
        let mut seen = 0;
        while subscriber.try_recv().is_ok() {
            seen += 1;
        }
        assert_eq!(seen, 1000, "subscribers get every line, shipped or not");

        until("the shipper to try and be refused", || {
            fake.calls.load(Ordering::SeqCst) > 0
        })
        .await;
        // CloudWatch Logs comes back: the shipper went on, and ships what is sent now.
        fake.mode.store(0, Ordering::SeqCst);
        sink.send(Line::function("F", "/aws/lambda/f", "s", "after".into()));
        until("a line shipped after the refusals", || sink.counts().1 > 0).await;
        until("the queue to drain", || {
            sink.inner.counts.queued_bytes.load(Ordering::SeqCst) == 0
        })
        .await;
    }

    #[tokio::test]
    async fn a_stalled_cloudwatch_times_out_and_the_shipper_goes_on() {
        let fake = Arc::new(Fake::default());
        fake.mode.store(2, Ordering::SeqCst);
        let sink = Sink::quiet();
        sink.ship_to(
            fake_logs(fake.clone()).await,
            Shipping {
                batch_wait: Duration::from_millis(10),
                call_timeout: Duration::from_millis(200),
                attempts: 1,
                ..Shipping::default()
            },
        );
        sink.send(Line::access("Api", "access", "s", "stalled".into()));
        until("the stalled call", || fake.puts.load(Ordering::SeqCst) == 1).await;
        fake.mode.store(0, Ordering::SeqCst);
        sink.send(Line::access("Api", "access", "s", "later".into()));
        until("the next line shipped", || {
            fake.accepted.load(Ordering::SeqCst) == 1
        })
        .await;
        assert_eq!(
            sink.counts(),
            (0, 1),
            "the stalled batch was given up, not shipped twice"
        );
        fake.release.notify_waiters();
    }

    #[test]
    fn a_second_ship_to_is_refused() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let client = fake_logs(Arc::new(Fake::default())).await;
            let sink = Sink::quiet();
            assert!(sink.ship_to(client.clone(), Shipping::default()));
            assert!(!sink.ship_to(client, Shipping::default()));
        });
    }

    #[test]
    fn lambda_lines_go_to_the_stream_of_the_latest_environment() {
        let sink = Sink::quiet();
        let mut lines = sink.subscribe();
        sink.environment_started("F", "2026/01/01/[$LATEST]aaaa");
        sink.environment_started("F", "2026/01/01/[$LATEST]bbbb");
        sink.platform("F", "/aws/lambda/f", "END RequestId: r");
        assert_eq!(
            lines.try_recv().expect("line").stream,
            "2026/01/01/[$LATEST]bbbb"
        );
    }
}
