//! kinesis-stream: `POST /submit/{streamName}/{eventId}` with HTTP Basic auth puts each body on
//! the stream (answer `200 {"SequenceNumber", "ShardId"}`); the consumer stores one item per event
//! id, the record with the highest sequence number winning; a record it cannot store (not JSON,
//! nested deeper than DynamoDB's 32 levels) is bisected out, retried `MaximumRetryAttempts` times
//! and written to `FailureBucket` with its data (README, "Ordering and failure semantics").
//!
//! The plan: good events on new keys and on keys used before (later updates), duplicates (the
//! same body on the same key again: a new record, the same item content), groups of 3-5 posts at
//! once on one key (their sequence numbers decide the winner), poison records (plain text, or
//! JSON 40 levels deep) on their own key or on a good key, and requests the API must refuse
//! (another stream: 404; an event id of 257 characters: 400; another content type: 415; a wrong
//! password: 403). The account ([`compare`]) reads the table and the bucket.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use base64::Engine as _;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Kind, Problem, Report, Sent, Target, Workload};

/// What a refused request tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Another stream name in the path: 404.
    WrongStream,
    /// An event id of 257 characters (Kinesis's partition key takes 256): 400.
    LongKey,
    /// `Content-Type: application/xml`: 415.
    ContentType,
    /// The right user with a wrong password: 403.
    WrongPassword,
}

/// One planned request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    kind: Kind,
    /// The event id (partition key).
    key: String,
    /// The body, exactly as sent.
    body: String,
    /// `Content-Type` of the body.
    content_type: &'static str,
    /// For `Invalid`: how it is wrong.
    refusal: Option<Refusal>,
    /// For `Duplicate`: the index of the original.
    original: Option<usize>,
}

/// What one request got back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    sent: Sent,
    /// The sequence number of an accepted record.
    sequence: Option<String>,
    /// A 2xx without a sequence number (never acknowledged, but never allowed either).
    malformed: bool,
}

/// An item of the events table.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    sequence: String,
    /// `payload.i` of our bodies: the plan index of the body's first request.
    index: Option<u64>,
}

/// A record found in `FailureBucket`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failed {
    sequence: String,
    key: String,
    /// The client's body, out of the API's envelope (the record's data if it has none).
    body: Vec<u8>,
}

/// What moto holds for the pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Found {
    /// Items by event id (only keys of this run).
    items: BTreeMap<String, Item>,
    /// Every record of every failure object.
    failed: Vec<Failed>,
}

/// The kinesis-stream workload.
#[derive(Debug)]
pub struct KinesisStream {
    tag: String,
    plan: Vec<Planned>,
    ledger: Mutex<Vec<Option<Answer>>>,
    /// Failure objects already read, by S3 key (they never change).
    objects: Mutex<HashMap<String, Vec<Failed>>>,
}

/// Sequence numbers compare as numbers of any length (moto's are small, AWS's 56 digits).
fn order(sequence: &str) -> (usize, &str) {
    let digits = sequence.trim_start_matches('0');
    (digits.len(), digits)
}

fn newer(a: &str, b: &str) -> bool {
    order(a) > order(b)
}

impl KinesisStream {
    /// A plan of `count` requests fixed by `seed`.
    pub fn new(seed: u64, count: usize) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let tag = format!("{:08x}", rng.u32(..));
        let plan = plan(&tag, &mut rng, count);
        KinesisStream {
            tag,
            ledger: Mutex::new(vec![None; plan.len()]),
            plan,
            objects: Mutex::new(HashMap::new()),
        }
    }

    fn answers(&self) -> Vec<Option<Answer>> {
        self.ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn read(&self, target: &Target) -> Result<Found> {
        let table = target.pattern["tables"]["EventsTable"]
            .as_str()
            .context("no EventsTable in the state file")?;
        let bucket = target.pattern["buckets"]["FailureBucket"]
            .as_str()
            .context("no FailureBucket in the state file")?;
        let dynamodb = aws_sdk_dynamodb::Client::new(&target.sdk);
        let mut found = Found::default();
        for item in scan(&dynamodb, table).await? {
            let Some(key) = item.get("eventId").and_then(|v| v.as_s().ok()) else {
                continue;
            };
            if !key.contains(&self.tag) {
                continue; // an earlier run's
            }
            let sequence = item
                .get("sequenceNumber")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            let index = item
                .get("payload")
                .and_then(|v| v.as_m().ok())
                .and_then(|m| m.get("i"))
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok());
            found.items.insert(key.clone(), Item { sequence, index });
        }
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&target.sdk)
                .force_path_style(true)
                .build(),
        );
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = s3
                .list_objects_v2()
                .bucket(bucket)
                .prefix("aws/lambda/")
                .set_continuation_token(token)
                .send()
                .await
                .context("listing FailureBucket")?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        for key in keys {
            let known = self
                .objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned();
            let records = match known {
                Some(records) => records,
                None => {
                    let object = s3
                        .get_object()
                        .bucket(bucket)
                        .key(&key)
                        .send()
                        .await
                        .with_context(|| format!("reading {key}"))?;
                    let bytes = object.body.collect().await?.into_bytes();
                    let records = failure_records(&bytes)
                        .with_context(|| format!("the failure object {key}"))?;
                    self.objects
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key, records.clone());
                    records
                }
            };
            found.failed.extend(records);
        }
        Ok(found)
    }
}

/// Every item of `table`, all pages (an error instead of a panic: `pending` asks every second).
async fn scan(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<Vec<HashMap<String, AttributeValue>>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .with_context(|| format!("scanning {table}"))?;
        items.extend(page.items().iter().cloned());
        start = page.last_evaluated_key().cloned();
        if start.is_none() {
            return Ok(items);
        }
    }
}

/// The records of one failure object: `payload` (the invocation's event, a JSON string or an
/// object) holds them, each with base64 `data`, which holds the API's envelope.
fn failure_records(object: &[u8]) -> Result<Vec<Failed>> {
    let object: Value = serde_json::from_slice(object).context("not JSON")?;
    let payload = match &object["payload"] {
        Value::String(text) => serde_json::from_str(text).context("payload is not JSON")?,
        other => other.clone(),
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for record in payload["Records"].as_array().cloned().unwrap_or_default() {
        let kinesis = &record["kinesis"];
        let data = b64
            .decode(kinesis["data"].as_str().unwrap_or_default())
            .unwrap_or_default();
        let body = serde_json::from_slice::<Value>(&data)
            .ok()
            .and_then(|v| {
                v["apiGatewayRequest"]["body"]
                    .as_str()
                    .and_then(|b| b64.decode(b).ok())
            })
            .unwrap_or(data);
        out.push(Failed {
            sequence: kinesis["sequenceNumber"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            key: kinesis["partitionKey"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            body,
        });
    }
    Ok(out)
}

/// A JSON body of request `index` on `key` (a duplicate reuses its original's byte for byte).
fn good_body(tag: &str, index: usize, key: &str, rng: &mut fastrand::Rng) -> String {
    json!({"run": tag, "i": index, "key": key, "v": rng.u32(..)}).to_string()
}

/// The plan: see the module's documentation for the mix.
fn plan(tag: &str, rng: &mut fastrand::Rng, count: usize) -> Vec<Planned> {
    let mut plan: Vec<Planned> = Vec::with_capacity(count);
    let mut keys = 0usize;
    let mut new_key = |prefix: &str| {
        keys += 1;
        format!("{prefix}-{tag}-{keys}")
    };
    // Keys of good requests, recent first: later updates pick among them.
    let mut used: Vec<String> = Vec::new();
    while plan.len() < count {
        let i = plan.len();
        let roll = rng.f64();
        let left = count - i;
        let good = |key: String, rng: &mut fastrand::Rng| Planned {
            kind: Kind::Good,
            body: good_body(tag, i, &key, rng),
            key,
            content_type: "application/json",
            refusal: None,
            original: None,
        };
        if roll < 0.10 && left >= 3 {
            let key = new_key("s");
            let n = rng.usize(3..=5).min(left);
            for j in 0..n {
                plan.push(Planned {
                    kind: Kind::SameKey,
                    body: good_body(tag, i + j, &key, rng),
                    key: key.clone(),
                    content_type: "application/json",
                    refusal: None,
                    original: None,
                });
            }
            used.push(key);
        } else if roll < 0.18 {
            // The original: a good request 2-8 indices back.
            let original = (i.saturating_sub(8)..i.saturating_sub(1))
                .rev()
                .find(|j| plan[*j].kind == Kind::Good);
            match original {
                Some(j) => {
                    let mut copy = plan[j].clone();
                    copy.kind = Kind::Duplicate;
                    copy.original = Some(j);
                    plan.push(copy);
                }
                None => {
                    let key = new_key("k");
                    used.push(key.clone());
                    plan.push(good(key, rng));
                }
            }
        } else if roll < 0.23 {
            // On a good key now and then: it holds that key's later records until discarded.
            let key = if rng.f64() < 0.3 && !used.is_empty() {
                used[used.len() - 1 - rng.usize(..used.len().min(10))].clone()
            } else {
                new_key("p")
            };
            let body = if rng.bool() {
                format!("poison {tag} {i}: not JSON")
            } else {
                let mut deep = json!({"run": tag, "i": i});
                for _ in 0..40 {
                    deep = json!([deep]);
                }
                json!({"run": tag, "i": i, "deep": deep}).to_string()
            };
            let content_type = if body.starts_with('{') {
                "application/json"
            } else {
                "text/plain"
            };
            plan.push(Planned {
                kind: Kind::Poison,
                key,
                body,
                content_type,
                refusal: None,
                original: None,
            });
        } else if roll < 0.30 {
            let refusal = match rng.usize(..4) {
                0 => Refusal::WrongStream,
                1 => Refusal::LongKey,
                2 => Refusal::ContentType,
                _ => Refusal::WrongPassword,
            };
            let key = match refusal {
                Refusal::LongKey => {
                    let base = new_key("x");
                    format!("{base}{}", "k".repeat(257 - base.len().min(256)))
                }
                _ => new_key("x"),
            };
            plan.push(Planned {
                kind: Kind::Invalid,
                body: good_body(tag, i, &key, rng),
                key,
                content_type: if refusal == Refusal::ContentType {
                    "application/xml"
                } else {
                    "application/json"
                },
                refusal: Some(refusal),
                original: None,
            });
        } else {
            let key = if rng.f64() < 0.4 && !used.is_empty() {
                used[used.len() - 1 - rng.usize(..used.len().min(20))].clone()
            } else {
                new_key("k")
            };
            used.push(key.clone());
            plan.push(good(key, rng));
        }
    }
    plan.truncate(count);
    plan
}

/// The plan index whose body a stored or failed record carries (a duplicate's is its original).
fn origin(plan: &[Planned], index: usize) -> usize {
    plan[index].original.unwrap_or(index)
}

/// Compares the ledger with moto's contents.
fn compare(plan: &[Planned], answers: &[Option<Answer>], found: &Found) -> Report {
    let mut report = Report {
        pattern: "kinesis-stream".into(),
        ..Report::default()
    };
    let mut problems = Vec::new();
    // Accepted records by sequence number.
    let mut by_sequence: HashMap<&str, usize> = HashMap::new();
    for (i, answer) in answers.iter().enumerate() {
        let Some(answer) = answer else { continue };
        report.answered(&answer.sent);
        let p = &plan[i];
        if answer.malformed {
            problems.push(Problem::WrongAnswer(format!(
                "request {i} (key {}): a 2xx without a sequence number",
                p.key
            )));
        }
        match (&answer.sent, p.kind) {
            (Sent::Accepted, Kind::Invalid) => problems.push(Problem::WrongAnswer(format!(
                "request {i} (key {}, {:?}) was accepted",
                short(&p.key),
                p.refusal
            ))),
            (Sent::Refused(status), Kind::Invalid) if (400..500).contains(status) => {
                report.count("refused-invalid");
            }
            (Sent::Refused(status), _) if (400..500).contains(status) => {
                problems.push(Problem::WrongAnswer(format!(
                    "request {i} ({:?}, key {}) refused with {status}",
                    p.kind, p.key
                )));
            }
            _ => {}
        }
        if let (Sent::Accepted, Some(sequence)) = (&answer.sent, &answer.sequence)
            && p.kind != Kind::Invalid
            && by_sequence.insert(sequence, i).is_some()
        {
            problems.push(Problem::Doubled(format!(
                "sequence number {sequence} answered twice"
            )));
        }
    }
    // The failure records: each maps to an accepted record (by sequence number) or to an
    // unanswered request (by body); anything else was never acknowledged.
    let mut dead: HashMap<usize, usize> = HashMap::new();
    let mut unanswered_dead: BTreeSet<usize> = BTreeSet::new();
    for record in &found.failed {
        if let Some(i) = by_sequence.get(record.sequence.as_str()) {
            *dead.entry(*i).or_default() += 1;
            continue;
        }
        let unanswered = plan.iter().enumerate().find(|(i, p)| {
            p.body.as_bytes() == record.body.as_slice()
                && p.key == record.key
                && answers[*i]
                    .as_ref()
                    .is_some_and(|a| a.sent == Sent::Unanswered)
                && !unanswered_dead.contains(i)
        });
        match unanswered {
            Some((i, _)) => {
                unanswered_dead.insert(i);
                report.count("unanswered-dead-lettered");
            }
            None => problems.push(Problem::NotAccepted(format!(
                "failure record of key {} at sequence {}",
                short(&record.key),
                record.sequence
            ))),
        }
    }
    for (i, n) in &dead {
        if *n > 1 {
            problems.push(Problem::Doubled(format!(
                "request {i} (key {}, sequence {:?}) in FailureBucket {n} times",
                plan[*i].key,
                answers[*i].as_ref().and_then(|a| a.sequence.clone())
            )));
        }
    }
    // Per key: the accepted records still meant to be applied, and the item.
    let mut keys: BTreeMap<&str, Vec<(usize, &str)>> = BTreeMap::new();
    for (sequence, i) in &by_sequence {
        keys.entry(plan[*i].key.as_str())
            .or_default()
            .push((*i, sequence));
    }
    for (key, mut records) in keys {
        records.sort_by(|a, b| order(a.1).cmp(&order(b.1)));
        let item = found.items.get(key);
        // The newest record that is meant to be stored: not poison, not dead-lettered.
        let newest = records
            .iter()
            .rev()
            .find(|(i, _)| plan[*i].kind != Kind::Poison && !dead.contains_key(i))
            .copied();
        if let (Some(item), Some((_, expected))) = (item, newest)
            && newer(expected, &item.sequence)
        {
            problems.push(Problem::OutOfOrder(format!(
                "key {key}: stored sequence {}, newest accepted {expected}",
                item.sequence
            )));
        }
        for (i, sequence) in &records {
            let p = &plan[*i];
            let dead_lettered = dead.contains_key(i);
            let stored = item.is_some_and(|it| it.sequence == *sequence);
            let superseded = item.is_some_and(|it| newer(&it.sequence, sequence));
            match p.kind {
                Kind::Poison => {
                    if dead_lettered {
                        report.count("dead-lettered");
                    } else {
                        problems.push(Problem::Lost(format!(
                            "poison request {i} (key {key}, sequence {sequence}) not in FailureBucket"
                        )));
                    }
                    if stored {
                        problems.push(Problem::Doubled(format!(
                            "poison request {i} (key {key}) stored"
                        )));
                    }
                }
                _ => {
                    if dead_lettered {
                        report.count("dead-lettered");
                        problems.push(Problem::UnjustifiedDeadLetter(format!(
                            "{:?} request {i} (key {key}, sequence {sequence}) in FailureBucket",
                            p.kind
                        )));
                        if stored {
                            problems.push(Problem::Doubled(format!(
                                "request {i} (key {key}) stored and in FailureBucket"
                            )));
                        }
                    } else if stored {
                        report.count(if p.kind == Kind::Duplicate {
                            "stored-duplicate"
                        } else {
                            "stored"
                        });
                        let expected = origin(plan, *i) as u64;
                        if let Some(index) = item.and_then(|it| it.index)
                            && index != expected
                        {
                            problems.push(Problem::WrongAnswer(format!(
                                "key {key} at sequence {sequence} holds the body of request {index}, not {expected}"
                            )));
                        }
                    } else if superseded {
                        report.count("superseded");
                    } else if item.is_none() {
                        problems.push(Problem::Lost(format!(
                            "request {i} (key {key}, sequence {sequence}): no item"
                        )));
                    } else {
                        // Older than what it should have replaced: OutOfOrder above names it.
                        report.count("not-applied");
                    }
                }
            }
        }
    }
    // Items whose sequence number no accepted request has: an unanswered request of that key
    // (by its body's index), or something never acknowledged.
    for (key, item) in &found.items {
        if by_sequence.contains_key(item.sequence.as_str()) {
            continue;
        }
        let unanswered = item.index.and_then(|index| {
            plan.iter().enumerate().find(|(i, p)| {
                p.key == *key
                    && origin(plan, *i) as u64 == index
                    && answers[*i]
                        .as_ref()
                        .is_some_and(|a| a.sent == Sent::Unanswered)
            })
        });
        match unanswered {
            Some(_) => report.count("unanswered-stored"),
            None => problems.push(Problem::NotAccepted(format!(
                "item of key {} at sequence {}",
                short(key),
                item.sequence
            ))),
        }
    }
    problems.sort();
    report.problems = problems;
    report
}

/// A key as a problem names it (an event id of 257 characters is cut).
fn short(key: &str) -> String {
    if key.len() > 40 {
        format!("{}...", &key[..40])
    } else {
        key.to_owned()
    }
}

/// What is still on its way: accepted poison not yet in the bucket, accepted records whose key
/// holds an older item (or none) and that are not in the bucket.
fn remaining(plan: &[Planned], answers: &[Option<Answer>], found: &Found) -> Option<String> {
    let dead: BTreeSet<&str> = found.failed.iter().map(|f| f.sequence.as_str()).collect();
    let (mut poison, mut records) = (0, 0);
    for (i, answer) in answers.iter().enumerate() {
        let Some(Answer {
            sent: Sent::Accepted,
            sequence: Some(sequence),
            ..
        }) = answer
        else {
            continue;
        };
        let p = &plan[i];
        if p.kind == Kind::Invalid || dead.contains(sequence.as_str()) {
            continue;
        }
        if p.kind == Kind::Poison {
            poison += 1;
        } else if found
            .items
            .get(&p.key)
            .is_none_or(|item| newer(sequence, &item.sequence))
        {
            records += 1;
        }
    }
    (poison + records > 0).then(|| {
        format!(
            "{records} records not yet applied, {poison} poison records not yet in FailureBucket"
        )
    })
}

impl Workload for KinesisStream {
    fn name(&self) -> &'static str {
        "kinesis-stream"
    }

    fn len(&self) -> usize {
        self.plan.len()
    }

    fn accepted(&self) -> usize {
        self.ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|a| a.as_ref().is_some_and(|a| a.sent == Sent::Accepted))
            .count()
    }

    fn kind(&self, index: usize) -> Kind {
        self.plan[index].kind
    }

    fn send<'a>(&'a self, target: &'a Target, index: usize) -> BoxFuture<'a, Sent> {
        async move {
            let p = &self.plan[index];
            let base = target.pattern["baseUrl"].as_str().unwrap_or_default();
            let stream = match p.refusal {
                Some(Refusal::WrongStream) => format!("not-the-stream-{}", self.tag),
                _ => target.pattern["streams"]["EventStream"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            };
            let user = target.pattern["credentials"]["username"]
                .as_str()
                .unwrap_or_default();
            let mut password = target.pattern["credentials"]["password"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if p.refusal == Some(Refusal::WrongPassword) {
                password.push_str("-wrong");
            }
            let response = target
                .http
                .post(format!("{base}/submit/{stream}/{}", p.key))
                .basic_auth(user, Some(password))
                .header("content-type", p.content_type)
                .body(p.body.clone())
                .send()
                .await;
            let answer = match response {
                Err(_) => Answer {
                    sent: Sent::Unanswered,
                    sequence: None,
                    malformed: false,
                },
                Ok(response) => {
                    let status = response.status().as_u16();
                    match response.json::<Value>().await {
                        // The status came, the body did not: whether it was put is unknown.
                        Err(_) if (200..300).contains(&status) => Answer {
                            sent: Sent::Unanswered,
                            sequence: None,
                            malformed: false,
                        },
                        answer => {
                            let sequence = answer.ok().and_then(|v| {
                                v["SequenceNumber"]
                                    .as_str()
                                    .filter(|s| !s.is_empty())
                                    .map(str::to_owned)
                            });
                            match ((200..300).contains(&status), sequence) {
                                (true, Some(sequence)) => Answer {
                                    sent: Sent::Accepted,
                                    sequence: Some(sequence),
                                    malformed: false,
                                },
                                (true, None) => Answer {
                                    sent: Sent::Refused(status),
                                    sequence: None,
                                    malformed: true,
                                },
                                (false, _) => Answer {
                                    sent: Sent::Refused(status),
                                    sequence: None,
                                    malformed: false,
                                },
                            }
                        }
                    }
                }
            };
            let sent = answer.sent.clone();
            self.ledger.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(answer);
            sent
        }
        .boxed()
    }

    fn pending<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Option<String>>> {
        async move {
            let found = self.read(target).await?;
            Ok(remaining(&self.plan, &self.answers(), &found))
        }
        .boxed()
    }

    fn account<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Report>> {
        async move {
            let found = self.read(target).await?;
            Ok(compare(&self.plan, &self.answers(), &found))
        }
        .boxed()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn accepted(seq: &str) -> Option<Answer> {
        Some(Answer {
            sent: Sent::Accepted,
            sequence: Some(seq.into()),
            malformed: false,
        })
    }

    fn answer(sent: Sent) -> Option<Answer> {
        Some(Answer {
            sent,
            sequence: None,
            malformed: false,
        })
    }

    fn planned(kind: Kind, key: &str, i: usize) -> Planned {
        Planned {
            kind,
            key: key.into(),
            body: json!({"run": "t", "i": i, "key": key}).to_string(),
            content_type: "application/json",
            refusal: (kind == Kind::Invalid).then_some(Refusal::WrongStream),
            original: None,
        }
    }

    fn item(seq: &str, i: u64) -> Item {
        Item {
            sequence: seq.into(),
            index: Some(i),
        }
    }

    fn classes(report: &Report) -> Vec<&'static str> {
        report.problems.iter().map(Problem::class).collect()
    }

    #[test]
    fn the_plan_is_fixed_by_the_seed_and_mixes_every_kind() {
        let a = KinesisStream::new(7, 500);
        let b = KinesisStream::new(7, 500);
        assert_eq!(a.plan, b.plan);
        assert_eq!(a.tag, b.tag);
        assert_ne!(a.plan, KinesisStream::new(8, 500).plan);
        assert_eq!(a.plan.len(), 500);
        let mut kinds: BTreeMap<Kind, usize> = BTreeMap::new();
        for p in &a.plan {
            *kinds.entry(p.kind).or_default() += 1;
            assert!(p.key.contains(&a.tag), "{}", p.key);
        }
        for kind in [
            Kind::Good,
            Kind::Duplicate,
            Kind::Poison,
            Kind::Invalid,
            Kind::SameKey,
        ] {
            assert!(kinds.get(&kind).copied().unwrap_or(0) >= 10, "{kinds:?}");
        }
        assert!(kinds[&Kind::Good] > 250, "{kinds:?}");
    }

    #[test]
    fn duplicates_are_byte_identical_and_follow_their_original_closely() {
        let w = KinesisStream::new(3, 1000);
        let mut n = 0;
        for (i, p) in w.plan.iter().enumerate() {
            if p.kind == Kind::Duplicate {
                let j = p.original.unwrap();
                assert!(j < i && i - j <= 8, "{j} {i}");
                assert_eq!(w.plan[j].kind, Kind::Good);
                assert_eq!((&w.plan[j].key, &w.plan[j].body), (&p.key, &p.body));
                n += 1;
            }
        }
        assert!(n > 20);
    }

    #[test]
    fn same_key_requests_come_in_adjacent_groups_of_three_to_five() {
        let w = KinesisStream::new(11, 2000);
        let mut i = 0;
        while i < w.plan.len() {
            if w.plan[i].kind == Kind::SameKey {
                let key = &w.plan[i].key;
                let n = w.plan[i..]
                    .iter()
                    .take_while(|p| p.kind == Kind::SameKey && &p.key == key)
                    .count();
                assert!((3..=5).contains(&n) || i + n == w.plan.len(), "{n}");
                let bodies: BTreeSet<&String> = w.plan[i..i + n].iter().map(|p| &p.body).collect();
                assert_eq!(bodies.len(), n, "distinct bodies");
                i += n;
            } else {
                i += 1;
            }
        }
    }

    #[test]
    fn poison_bodies_are_what_the_consumer_cannot_store() {
        let w = KinesisStream::new(5, 1000);
        for p in w.plan.iter().filter(|p| p.kind == Kind::Poison) {
            match serde_json::from_str::<Value>(&p.body) {
                Err(_) => assert_eq!(p.content_type, "text/plain"),
                Ok(v) => {
                    let mut depth = 0;
                    let mut at = &v["deep"];
                    while let Some(inner) = at.get(0) {
                        depth += 1;
                        at = inner;
                    }
                    assert!(depth > 32, "deeper than DynamoDB's 32 levels");
                }
            }
        }
        for p in w
            .plan
            .iter()
            .filter(|p| p.refusal == Some(Refusal::LongKey))
        {
            assert_eq!(p.key.len(), 257);
        }
    }

    #[test]
    fn the_newest_sequence_number_stored_and_the_rest_superseded_is_ok() {
        let plan = vec![
            planned(Kind::SameKey, "a", 0),
            planned(Kind::SameKey, "a", 1),
            planned(Kind::SameKey, "a", 2),
            planned(Kind::Poison, "p", 3),
            planned(Kind::Invalid, "x", 4),
        ];
        let answers = vec![
            accepted("12"),
            accepted("9"),
            accepted("10"),
            accepted("11"),
            answer(Sent::Refused(404)),
        ];
        let found = Found {
            items: [("a".to_owned(), item("12", 0))].into(),
            failed: vec![Failed {
                sequence: "11".into(),
                key: "p".into(),
                body: plan[3].body.clone().into_bytes(),
            }],
        };
        let report = compare(&plan, &answers, &found);
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.outcomes["stored"], 1);
        assert_eq!(report.outcomes["superseded"], 2);
        assert_eq!(report.outcomes["dead-lettered"], 1);
        assert_eq!(report.outcomes["refused-invalid"], 1);
        assert_eq!((report.sent, report.accepted), (5, 4));
        assert_eq!(remaining(&plan, &answers, &found), None);
    }

    #[test]
    fn an_older_record_stored_over_a_newer_one_is_out_of_order() {
        let plan = vec![planned(Kind::Good, "a", 0), planned(Kind::Good, "a", 1)];
        let answers = vec![accepted("5"), accepted("100")];
        let found = Found {
            items: [("a".to_owned(), item("5", 0))].into(),
            failed: vec![],
        };
        let report = compare(&plan, &answers, &found);
        assert_eq!(classes(&report), ["out-of-order"]);
        // Numbers, not strings: "100" is newer than "5".
        assert!(remaining(&plan, &answers, &found).is_some());
    }

    #[test]
    fn a_missing_item_a_lost_poison_and_a_good_record_dead_lettered_are_reported() {
        let plan = vec![
            planned(Kind::Good, "a", 0),
            planned(Kind::Poison, "p", 1),
            planned(Kind::Good, "b", 2),
        ];
        let answers = vec![accepted("1"), accepted("2"), accepted("3")];
        let found = Found {
            items: BTreeMap::new(),
            failed: vec![Failed {
                sequence: "3".into(),
                key: "b".into(),
                body: vec![],
            }],
        };
        let report = compare(&plan, &answers, &found);
        assert_eq!(
            classes(&report),
            ["lost", "lost", "unjustified-dead-letter"],
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn what_no_accepted_request_explains_is_not_accepted_and_unanswered_ones_may_land() {
        let plan = vec![
            planned(Kind::Good, "a", 0),
            planned(Kind::Good, "b", 1),
            planned(Kind::Poison, "p", 2),
            planned(Kind::Good, "c", 3),
        ];
        let answers = vec![
            answer(Sent::Unanswered),
            answer(Sent::Refused(503)),
            answer(Sent::Unanswered),
            accepted("4"),
        ];
        let found = Found {
            items: [
                ("a".to_owned(), item("1", 0)),
                ("b".to_owned(), item("2", 1)),
                ("c".to_owned(), item("4", 3)),
            ]
            .into(),
            failed: vec![
                Failed {
                    sequence: "3".into(),
                    key: "p".into(),
                    body: plan[2].body.clone().into_bytes(),
                },
                Failed {
                    sequence: "7".into(),
                    key: "q".into(),
                    body: b"nobody sent this".to_vec(),
                },
            ],
        };
        let report = compare(&plan, &answers, &found);
        assert_eq!(
            classes(&report),
            ["not-accepted", "not-accepted"],
            "{:?}",
            report.problems
        );
        assert_eq!(report.outcomes["unanswered-stored"], 1);
        assert_eq!(report.outcomes["unanswered-dead-lettered"], 1);
        assert_eq!(report.outcomes["stored"], 1);
    }

    #[test]
    fn wrong_answers_and_a_record_dead_lettered_twice() {
        let mut plan = vec![
            planned(Kind::Invalid, "x", 0),
            planned(Kind::Good, "a", 1),
            planned(Kind::Poison, "p", 2),
        ];
        plan[0].refusal = Some(Refusal::LongKey);
        let answers = vec![accepted("1"), answer(Sent::Refused(400)), accepted("3")];
        let twice = Failed {
            sequence: "3".into(),
            key: "p".into(),
            body: vec![],
        };
        let found = Found {
            items: BTreeMap::new(),
            failed: vec![twice.clone(), twice],
        };
        let report = compare(&plan, &answers, &found);
        assert_eq!(
            classes(&report),
            ["doubled", "wrong-answer", "wrong-answer"],
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn a_duplicate_stored_holds_its_originals_body() {
        let mut plan = vec![planned(Kind::Good, "a", 0), planned(Kind::Good, "a", 0)];
        plan[1].kind = Kind::Duplicate;
        plan[1].original = Some(0);
        let answers = vec![accepted("1"), accepted("2")];
        let found = Found {
            items: [("a".to_owned(), item("2", 0))].into(),
            failed: vec![],
        };
        let report = compare(&plan, &answers, &found);
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.outcomes["stored-duplicate"], 1);
        assert_eq!(report.outcomes["superseded"], 1);
    }

    #[test]
    fn failure_objects_are_read_out_of_the_envelope() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let envelope =
            json!({"apiGatewayRequest": {"apiRequestId": "r", "body": b64.encode("not JSON")}});
        let event = json!({"Records": [{"kinesis": {"sequenceNumber": "42", "partitionKey": "p",
            "data": b64.encode(envelope.to_string())}}]});
        let object = json!({"KinesisBatchInfo": {}, "payload": event.to_string()});
        let records = failure_records(object.to_string().as_bytes()).unwrap();
        assert_eq!(
            records,
            [Failed {
                sequence: "42".into(),
                key: "p".into(),
                body: b"not JSON".to_vec()
            }]
        );
    }
}
