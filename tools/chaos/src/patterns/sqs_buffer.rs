//! sqs-buffer: `POST /submit` (HTTP API, Basic auth) queues the body as it is; the consumer stores
//! each event once under its `eventId` (else the SQS message id), keeps a reused id with another
//! body as a conflict item (`conflict#<eventId>#<hash>`), and dead-letters what it cannot store
//! (not JSON, a bad `eventId`, nested deeper than DynamoDB's 32 levels) after `MaxReceiveCount`
//! receives. The API answers SQS's XML with the `MessageId`, `400` for an empty body, `401`
//! without credentials, `403` for wrong ones, `500` for a message SQS refuses (README "How it
//! behaves"; `local/gateway/tests/e2e_sqs_buffer.rs`).
//!
//! Every body carries a `tag` unique to it (byte-identical bodies, a duplicate or one of a
//! same-body group, share it): the stored `payload` keeps it, so each item maps back to the
//! requests that sent its body, and its `messageId` to the one whose message wrote it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use futures::future::BoxFuture;
use serde_json::json;

use super::{Kind, Problem, Report, Sent, Target, Workload};

/// How a request authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// The stack's credentials.
    Good,
    /// The stack's user with a wrong password: `403`.
    WrongPassword,
    /// No `Authorization` header: `401`.
    Missing,
}

/// What the pattern promises to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// A 2xx with the receipt (a 5xx or no answer is allowed: nothing was acknowledged).
    Accept,
    /// This status and nothing queued.
    Refuse(u16),
}

/// One planned request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) kind: Kind,
    /// The body, byte for byte.
    pub(crate) body: String,
    /// Unique per distinct body; the id problems name.
    pub(crate) tag: String,
    /// The body's `eventId` when it has a usable one (the item's key).
    pub(crate) key: Option<String>,
    pub(crate) auth: Auth,
    pub(crate) expect: Expect,
}

/// What one request got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) sent: Sent,
    /// SQS's `MessageId` from the XML answer.
    pub(crate) receipt: Option<String>,
    /// A 2xx without a message id: acknowledged without a receipt.
    pub(crate) malformed: bool,
}

/// One item of the events table, as far as the account needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) event_id: String,
    /// `kind = conflict`.
    pub(crate) conflict: bool,
    /// `conflictOf` of a conflict item.
    pub(crate) conflict_of: Option<String>,
    /// `payload.tag`.
    pub(crate) tag: Option<String>,
    pub(crate) message_id: Option<String>,
}

/// One message of a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadLetter {
    pub(crate) message_id: String,
    pub(crate) body: String,
    /// Its String message attributes.
    pub(crate) attributes: BTreeMap<String, String>,
}

/// What the account read from moto.
#[derive(Debug, Clone, Default)]
pub(crate) struct Found {
    pub(crate) items: Vec<Item>,
    pub(crate) dead: Vec<DeadLetter>,
}

/// The planned requests for `count` requests from `seed` (see the module's documentation).
pub(crate) fn plan(seed: u64, count: usize) -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let run = format!("{:08x}", rng.u32(..));
    let mut plan: Vec<Planned> = Vec::with_capacity(count);
    // (index at which it is due, index of its original)
    let mut duplicates: Vec<(usize, usize)> = Vec::new();
    let mut unit = 0usize;
    while plan.len() < count {
        if let Some(at) = duplicates.iter().position(|(due, _)| *due <= plan.len()) {
            let (_, original) = duplicates.swap_remove(at);
            let mut again = plan[original].clone();
            again.kind = Kind::Duplicate;
            plan.push(again);
            continue;
        }
        unit += 1;
        let tag = format!("{run}-{unit}");
        let key = format!("evt-{run}-{unit}");
        let roll = rng.u32(0..1000);
        let good = |rng: &mut fastrand::Rng, keyed: bool| {
            let body = if keyed {
                json!({"eventId": key, "tag": tag, "amount": rng.u32(1..10_000), "note": "chaos"})
            } else {
                json!({"tag": tag, "amount": rng.u32(1..10_000)})
            };
            Planned {
                kind: Kind::Good,
                body: body.to_string(),
                tag: tag.clone(),
                key: keyed.then(|| key.clone()),
                auth: Auth::Good,
                expect: Expect::Accept,
            }
        };
        if roll < 620 {
            // One in ten good events has no eventId: it is keyed on its message id.
            let keyed = rng.u32(0..10) != 0;
            plan.push(good(&mut rng, keyed));
        } else if roll < 700 {
            plan.push(good(&mut rng, true));
            duplicates.push((plan.len() + rng.usize(1..5), plan.len() - 1));
        } else if roll < 750 {
            let body = match rng.u32(0..3) {
                0 => format!("not json {tag}"),
                1 => json!({"eventId": rng.u32(..), "tag": tag}).to_string(),
                // 40 arrays in one another inside the object: deeper than DynamoDB's 32 levels.
                _ => format!(
                    "{{\"eventId\":\"{key}\",\"tag\":\"{tag}\",\"deep\":{}1{}}}",
                    "[".repeat(40),
                    "]".repeat(40)
                ),
            };
            plan.push(Planned {
                kind: Kind::Poison,
                body,
                tag,
                key: None,
                auth: Auth::Good,
                expect: Expect::Accept,
            });
        } else if roll < 820 {
            let valid = json!({"eventId": key, "tag": tag}).to_string();
            let (body, auth, expect) = match rng.u32(0..4) {
                0 => (String::new(), Auth::Good, Expect::Refuse(400)),
                1 => (valid, Auth::WrongPassword, Expect::Refuse(403)),
                2 => (valid, Auth::Missing, Expect::Refuse(401)),
                // A character outside SQS's set: SQS refuses the call, API Gateway answers 500.
                _ => (
                    json!({"eventId": key, "tag": tag, "note": "\u{FFFE}"}).to_string(),
                    Auth::Good,
                    Expect::Refuse(500),
                ),
            };
            plan.push(Planned {
                kind: Kind::Invalid,
                body,
                tag,
                key: Some(key),
                auth,
                expect,
            });
        } else if roll < 845 {
            // 3-5 posts of one eventId at once: half the groups with one body (one item), half
            // with a body each (one original, the others conflict items).
            let members = rng.usize(3..=5);
            let same = rng.bool();
            for member in 0..members {
                let tag = if same {
                    tag.clone()
                } else {
                    format!("{tag}.{member}")
                };
                let body =
                    json!({"eventId": key, "tag": tag, "member": if same { 0 } else { member }});
                plan.push(Planned {
                    kind: Kind::SameKey,
                    body: body.to_string(),
                    tag,
                    key: Some(key.clone()),
                    auth: Auth::Good,
                    expect: Expect::Accept,
                });
            }
        } else {
            let keyed = rng.u32(0..10) != 0;
            plan.push(good(&mut rng, keyed));
        }
    }
    plan.truncate(count);
    plan
}

/// The message id in SQS's XML answer.
pub(crate) fn message_id_of(xml: &str) -> Option<String> {
    if !xml.contains("<SendMessageResponse") {
        return None;
    }
    xml.split_once("<MessageId>")
        .and_then(|(_, rest)| rest.split_once("</MessageId>"))
        .map(|(id, _)| id.trim().to_owned())
        .filter(|id| !id.is_empty())
}

/// The Basic-auth user and password of a pattern.
pub(crate) fn credentials(target: &Target) -> Result<(String, String)> {
    let c = &target.pattern["credentials"];
    Ok((
        c["username"]
            .as_str()
            .context("no username in the state")?
            .to_owned(),
        c["password"]
            .as_str()
            .context("no password in the state")?
            .to_owned(),
    ))
}

/// The URL of the queue `logical` of a pattern.
pub(crate) fn queue_url(target: &Target, logical: &str) -> Result<String> {
    target.pattern["queues"][logical]["url"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no queue {logical} in the state"))
}

/// The name of the table `logical` of a pattern.
pub(crate) fn table_name(target: &Target, logical: &str) -> Result<String> {
    target.pattern["tables"][logical]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no table {logical} in the state"))
}

/// Messages on a queue: visible, in flight and delayed.
pub(crate) async fn queue_depth(sdk: &aws_setup::SdkConfig, url: &str) -> Result<u64> {
    let names = [
        QueueAttributeName::ApproximateNumberOfMessages,
        QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        QueueAttributeName::ApproximateNumberOfMessagesDelayed,
    ];
    let mut call = aws_sdk_sqs::Client::new(sdk)
        .get_queue_attributes()
        .queue_url(url);
    for name in &names {
        call = call.attribute_names(name.clone());
    }
    let out = call.send().await.context("GetQueueAttributes")?;
    let attributes = out.attributes();
    Ok(names
        .iter()
        .filter_map(|n| attributes.and_then(|a| a.get(n)))
        .filter_map(|v| v.parse::<u64>().ok())
        .sum())
}

/// Every message of a dead-letter queue, each received once with a visibility timeout of 30 s
/// so that no message is counted twice within the account (none are deleted).
pub(crate) async fn dead_letters(sdk: &aws_setup::SdkConfig, url: &str) -> Result<Vec<DeadLetter>> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut empty = 0;
    while empty < 2 {
        let answer = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .wait_time_seconds(0)
            .message_attribute_names("All")
            .send()
            .await
            .context("ReceiveMessage on the dead-letter queue")?;
        if answer.messages().is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        for message in answer.messages() {
            let id = message.message_id().unwrap_or_default().to_owned();
            if !seen.insert(id.clone()) {
                continue;
            }
            let attributes = message
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            out.push(DeadLetter {
                message_id: id,
                body: message.body().unwrap_or_default().to_owned(),
                attributes,
            });
        }
    }
    Ok(out)
}

/// A String attribute of an item.
pub(crate) fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// The sqs-buffer workload.
pub struct SqsBuffer {
    plan: Vec<Planned>,
    ledger: Mutex<Vec<Option<Answer>>>,
}

impl SqsBuffer {
    /// `count` requests planned from `seed`.
    pub fn new(seed: u64, count: usize) -> Self {
        let plan = plan(seed, count);
        let ledger = Mutex::new(vec![None; plan.len()]);
        Self { plan, ledger }
    }

    fn ledger(&self) -> Vec<Option<Answer>> {
        self.ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn post(&self, target: &Target, index: usize) -> Result<Answer> {
        let planned = &self.plan[index];
        let base = target.pattern["baseUrl"]
            .as_str()
            .context("no baseUrl in the state")?;
        let (user, password) = credentials(target)?;
        let mut request = target
            .http
            .post(format!("{base}/submit"))
            .header("content-type", "application/json")
            .body(planned.body.clone());
        request = match planned.auth {
            Auth::Good => request.basic_auth(user, Some(password)),
            Auth::WrongPassword => request.basic_auth(user, Some(format!("{password}-wrong"))),
            Auth::Missing => request,
        };
        let Ok(response) = request.send().await else {
            return Ok(unanswered());
        };
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            return Ok(Answer {
                sent: Sent::Refused(status),
                receipt: None,
                malformed: false,
            });
        }
        let Ok(text) = response.text().await else {
            // A 2xx whose body never arrived: its receipt is unknown.
            return Ok(unanswered());
        };
        Ok(match message_id_of(&text) {
            Some(id) => Answer {
                sent: Sent::Accepted,
                receipt: Some(id),
                malformed: false,
            },
            None => Answer {
                sent: Sent::Refused(status),
                receipt: None,
                malformed: true,
            },
        })
    }
}

fn unanswered() -> Answer {
    Answer {
        sent: Sent::Unanswered,
        receipt: None,
        malformed: false,
    }
}

/// The id of request `index` in problems: its tag and index (never a body or credential).
fn id_of(plan: &[Planned], index: usize) -> String {
    format!(
        "{} (request {index}, {:?})",
        plan[index].tag, plan[index].kind
    )
}

/// Checks the answers against what the pattern promises; the problems.
pub(crate) fn check_answers(
    plan: &[Planned],
    ledger: &[Option<Answer>],
    report: &mut Report,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (index, answer) in ledger.iter().enumerate() {
        let Some(answer) = answer else { continue };
        report.answered(&answer.sent);
        let id = id_of(plan, index);
        if answer.malformed {
            problems.push(Problem::WrongAnswer(format!(
                "{id}: a 2xx without the queue's message id"
            )));
        }
        match (plan[index].expect, &answer.sent) {
            (Expect::Accept, Sent::Refused(status)) if (400..500).contains(status) => problems
                .push(Problem::WrongAnswer(format!(
                    "{id}: a valid request refused with {status}"
                ))),
            (Expect::Refuse(want), Sent::Accepted) => problems.push(Problem::WrongAnswer(format!(
                "{id}: acknowledged where the pattern answers {want}"
            ))),
            (Expect::Refuse(want), Sent::Refused(status))
                if *status != want && (400..500).contains(&want) && (400..500).contains(status) =>
            {
                problems.push(Problem::WrongAnswer(format!(
                    "{id}: answered {status} where the pattern answers {want}"
                )))
            }
            _ => {}
        }
    }
    problems
}

/// The account: the ledger against what moto holds (pure, for the tests).
pub(crate) fn compare(plan: &[Planned], ledger: &[Option<Answer>], found: &Found) -> Report {
    let mut report = Report {
        pattern: "sqs-buffer".into(),
        ..Report::default()
    };
    let mut problems = check_answers(plan, ledger, &mut report);
    let sent = |i: usize| ledger.get(i).and_then(Option::as_ref).map(|a| &a.sent);
    let mut by_receipt: HashMap<&str, usize> = HashMap::new();
    for (index, answer) in ledger.iter().enumerate() {
        if let Some(Answer {
            sent: Sent::Accepted,
            receipt: Some(receipt),
            ..
        }) = answer
        {
            by_receipt.insert(receipt.as_str(), index);
        }
    }
    let mut by_tag: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_body: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, planned) in plan.iter().enumerate() {
        by_tag.entry(planned.tag.as_str()).or_default().push(index);
        by_body
            .entry(planned.body.as_str())
            .or_default()
            .push(index);
    }
    let mut terminal: Vec<Vec<&'static str>> = vec![Vec::new(); plan.len()];
    let mut stored_tags: HashSet<&str> = HashSet::new();
    let mut unanswered_used: HashSet<usize> = HashSet::new();
    for item in &found.items {
        let outcome = if item.conflict { "conflict" } else { "stored" };
        let Some(members) = item.tag.as_deref().and_then(|t| by_tag.get(t)) else {
            problems.push(Problem::NotAccepted(format!(
                "item {}: a body no request of the run sent",
                item.event_id
            )));
            continue;
        };
        let tag = plan[members[0]].tag.as_str();
        stored_tags.insert(tag);
        let writer = item
            .message_id
            .as_deref()
            .and_then(|m| by_receipt.get(m))
            .copied()
            .filter(|i| members.contains(i));
        // The item's key must be its body's: the eventId, conflict#<eventId>#..., or (no
        // eventId) the message id.
        let key_ok = match (&plan[members[0]].key, item.conflict) {
            (Some(key), false) => item.event_id == *key,
            (Some(key), true) => item.conflict_of.as_deref() == Some(key.as_str()),
            (None, false) => item.message_id.as_deref() == Some(item.event_id.as_str()),
            (None, true) => false,
        };
        if !key_ok {
            problems.push(Problem::WrongAnswer(format!(
                "item {}: stored under a key its body does not give ({tag})",
                item.event_id
            )));
        }
        match writer {
            Some(index) => terminal[index].push(outcome),
            None => {
                let unanswered = members
                    .iter()
                    .find(|i| sent(**i) == Some(&Sent::Unanswered) && !unanswered_used.contains(i));
                match unanswered {
                    Some(index) => {
                        unanswered_used.insert(*index);
                        report.count(&format!("unanswered-{outcome}"));
                    }
                    None => problems.push(Problem::NotAccepted(format!(
                        "item {}: written by message {}, which no accepted request sent",
                        item.event_id,
                        item.message_id.as_deref().unwrap_or("(none)")
                    ))),
                }
            }
        }
    }
    for dead in &found.dead {
        if let Some(index) = by_receipt.get(dead.message_id.as_str()) {
            terminal[*index].push("dead-lettered");
            continue;
        }
        let unanswered = by_body.get(dead.body.as_str()).and_then(|members| {
            members
                .iter()
                .find(|i| sent(**i) == Some(&Sent::Unanswered) && !unanswered_used.contains(i))
        });
        match unanswered {
            Some(index) => {
                unanswered_used.insert(*index);
                report.count("unanswered-dead-lettered");
            }
            None => problems.push(Problem::NotAccepted(format!(
                "dead letter {}: no accepted request sent it",
                dead.message_id
            ))),
        }
    }
    for (index, states) in terminal.iter_mut().enumerate() {
        if sent(index) != Some(&Sent::Accepted) {
            continue;
        }
        let planned = &plan[index];
        let id = id_of(plan, index);
        if states.is_empty() && stored_tags.contains(planned.tag.as_str()) {
            // Its body is stored from another request (a retry or a same-body post): a no-op.
            states.push("duplicate-absorbed");
        }
        match states.len() {
            0 => problems.push(Problem::Lost(id.clone())),
            1 => {}
            _ => problems.push(Problem::Doubled(format!("{id}: {}", states.join(" and ")))),
        }
        for state in states.iter() {
            report.count(state);
        }
        let dead = states.contains(&"dead-lettered");
        match planned.kind {
            Kind::Poison if states.iter().any(|s| *s != "dead-lettered") => problems.push(
                Problem::WrongAnswer(format!("{id}: a body the consumer cannot store was stored")),
            ),
            Kind::Good | Kind::Duplicate | Kind::SameKey if dead => {
                problems.push(Problem::UnjustifiedDeadLetter(id))
            }
            _ => {}
        }
    }
    problems.sort();
    report.problems = problems;
    report
}

impl Workload for SqsBuffer {
    fn name(&self) -> &'static str {
        "sqs-buffer"
    }

    fn len(&self) -> usize {
        self.plan.len()
    }

    fn accepted(&self) -> usize {
        self.ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|a| matches!(a, Some(a) if a.sent == Sent::Accepted))
            .count()
    }

    fn kind(&self, index: usize) -> Kind {
        self.plan[index].kind
    }

    fn send<'a>(&'a self, target: &'a Target, index: usize) -> BoxFuture<'a, Sent> {
        Box::pin(async move {
            let answer = self
                .post(target, index)
                .await
                .unwrap_or_else(|_| unanswered());
            let sent = answer.sent.clone();
            self.ledger.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(answer);
            sent
        })
    }

    fn pending<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Option<String>>> {
        Box::pin(async move {
            let depth = queue_depth(&target.sdk, &queue_url(target, "BufferQueue")?).await?;
            Ok((depth > 0).then(|| format!("{depth} messages on BufferQueue")))
        })
    }

    fn account<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Report>> {
        Box::pin(async move {
            let table = table_name(target, "EventsTable")?;
            let dynamodb = aws_sdk_dynamodb::Client::new(&target.sdk);
            let items = testkit::scan_all(&dynamodb, &table)
                .await
                .into_iter()
                .map(|item| Item {
                    event_id: text(&item, "eventId").unwrap_or_default(),
                    conflict: text(&item, "kind").as_deref() == Some("conflict"),
                    conflict_of: text(&item, "conflictOf"),
                    tag: item
                        .get("payload")
                        .and_then(|p| p.as_m().ok())
                        .and_then(|p| p.get("tag"))
                        .and_then(|t| t.as_s().ok())
                        .cloned(),
                    message_id: text(&item, "messageId"),
                })
                .collect();
            let dead = dead_letters(&target.sdk, &queue_url(target, "DeadLetterQueue")?).await?;
            Ok(compare(&self.plan, &self.ledger(), &Found { items, dead }))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_is_fixed_by_the_seed_and_mixes_every_kind() {
        assert_eq!(plan(7, 500), plan(7, 500));
        assert_ne!(plan(7, 500), plan(8, 500));
        let p = plan(7, 2000);
        assert_eq!(p.len(), 2000);
        let share = |k: Kind| p.iter().filter(|r| r.kind == k).count() as f64 / 2000.0;
        assert!(
            (0.6..0.8).contains(&share(Kind::Good)),
            "{}",
            share(Kind::Good)
        );
        assert!((0.04..0.12).contains(&share(Kind::Duplicate)));
        assert!((0.02..0.08).contains(&share(Kind::Poison)));
        assert!((0.04..0.10).contains(&share(Kind::Invalid)));
        assert!((0.06..0.14).contains(&share(Kind::SameKey)));
        // The run tag differs between seeds: no key of one run is a key of another.
        let keys = |p: &[Planned]| -> HashSet<String> { p.iter().map(|r| r.tag.clone()).collect() };
        assert!(keys(&plan(1, 300)).is_disjoint(&keys(&plan(2, 300))));
    }

    #[test]
    fn duplicates_follow_their_original_byte_for_byte() {
        let p = plan(3, 2000);
        let mut seen = 0;
        for (i, r) in p
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == Kind::Duplicate)
        {
            let original = p[..i]
                .iter()
                .rposition(|o| o.kind == Kind::Good && o.body == r.body)
                .expect("an original before it");
            assert!(i - original <= 8, "a few indices after: {original} -> {i}");
            assert_eq!(p[original].tag, r.tag);
            seen += 1;
        }
        assert!(seen > 50);
    }

    #[test]
    fn same_key_groups_are_adjacent_with_one_event_id() {
        let p = plan(5, 2000);
        let mut i = 0;
        let mut groups = 0;
        while i < p.len() {
            if p[i].kind != Kind::SameKey {
                i += 1;
                continue;
            }
            let key = p[i].key.clone();
            let mut j = i;
            while j < p.len() && p[j].kind == Kind::SameKey && p[j].key == key {
                j += 1;
            }
            if j < p.len() {
                // A group ends where another kind or key starts: 3-5 members (one at the very
                // end of the plan may be cut short).
                assert!((3..=5).contains(&(j - i)), "group at {i}: {}", j - i);
            }
            let tags: HashSet<&str> = p[i..j].iter().map(|r| r.tag.as_str()).collect();
            assert!(tags.len() == 1 || tags.len() == j - i);
            groups += 1;
            i = j;
        }
        assert!(groups > 20);
    }

    fn planned(kind: Kind, tag: &str, key: Option<&str>, body: &str) -> Planned {
        Planned {
            kind,
            body: body.into(),
            tag: tag.into(),
            key: key.map(Into::into),
            auth: Auth::Good,
            expect: Expect::Accept,
        }
    }

    fn accepted(receipt: &str) -> Option<Answer> {
        Some(Answer {
            sent: Sent::Accepted,
            receipt: Some(receipt.into()),
            malformed: false,
        })
    }

    fn item(event_id: &str, tag: &str, message_id: &str) -> Item {
        Item {
            event_id: event_id.into(),
            conflict: false,
            conflict_of: None,
            tag: Some(tag.into()),
            message_id: Some(message_id.into()),
        }
    }

    fn conflict(key: &str, tag: &str, message_id: &str) -> Item {
        Item {
            event_id: format!("conflict#{key}#hash-{tag}"),
            conflict: true,
            conflict_of: Some(key.into()),
            tag: Some(tag.into()),
            message_id: Some(message_id.into()),
        }
    }

    fn classes(report: &Report) -> Vec<&'static str> {
        report.problems.iter().map(Problem::class).collect()
    }

    /// A good event, its duplicate, a same-key group with different bodies, a poison body.
    fn small_plan() -> Vec<Planned> {
        vec![
            planned(
                Kind::Good,
                "t1",
                Some("k1"),
                r#"{"eventId":"k1","tag":"t1"}"#,
            ),
            planned(
                Kind::Duplicate,
                "t1",
                Some("k1"),
                r#"{"eventId":"k1","tag":"t1"}"#,
            ),
            planned(
                Kind::SameKey,
                "t2.0",
                Some("k2"),
                r#"{"eventId":"k2","tag":"t2.0"}"#,
            ),
            planned(
                Kind::SameKey,
                "t2.1",
                Some("k2"),
                r#"{"eventId":"k2","tag":"t2.1"}"#,
            ),
            planned(Kind::Poison, "t3", None, "not json t3"),
        ]
    }

    fn dead(message_id: &str, body: &str) -> DeadLetter {
        DeadLetter {
            message_id: message_id.into(),
            body: body.into(),
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn a_kept_promise_gives_one_terminal_state_per_accepted_request() {
        let ledger = vec![
            accepted("m1"),
            accepted("m2"),
            accepted("m3"),
            accepted("m4"),
            accepted("m5"),
        ];
        let found = Found {
            items: vec![
                item("k1", "t1", "m1"),
                item("k2", "t2.1", "m4"),
                conflict("k2", "t2.0", "m3"),
            ],
            dead: vec![dead("m5", "not json t3")],
        };
        let report = compare(&small_plan(), &ledger, &found);
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.accepted, 5);
        assert_eq!(report.outcomes["stored"], 2);
        assert_eq!(report.outcomes["duplicate-absorbed"], 1);
        assert_eq!(report.outcomes["conflict"], 1);
        assert_eq!(report.outcomes["dead-lettered"], 1);
    }

    #[test]
    fn a_missing_item_is_lost_and_a_good_event_dead_lettered_is_unjustified() {
        let ledger = vec![
            accepted("m1"),
            accepted("m2"),
            accepted("m3"),
            accepted("m4"),
            accepted("m5"),
        ];
        let found = Found {
            // k1's item deleted by hand; one of k2's bodies dead-lettered; the poison too.
            items: vec![item("k2", "t2.1", "m4")],
            dead: vec![
                dead("m3", r#"{"eventId":"k2","tag":"t2.0"}"#),
                dead("m5", "not json t3"),
            ],
        };
        let report = compare(&small_plan(), &ledger, &found);
        assert_eq!(
            classes(&report),
            vec!["lost", "lost", "unjustified-dead-letter"]
        );
    }

    #[test]
    fn an_item_of_a_refused_request_is_not_accepted_and_one_of_an_unanswered_is_allowed() {
        let plan = vec![
            planned(
                Kind::Good,
                "t1",
                Some("k1"),
                r#"{"eventId":"k1","tag":"t1"}"#,
            ),
            planned(
                Kind::Good,
                "t2",
                Some("k2"),
                r#"{"eventId":"k2","tag":"t2"}"#,
            ),
            planned(Kind::Poison, "t3", None, "not json t3"),
        ];
        let ledger = vec![
            Some(Answer {
                sent: Sent::Refused(500),
                receipt: None,
                malformed: false,
            }),
            Some(unanswered()),
            Some(unanswered()),
        ];
        let found = Found {
            items: vec![item("k1", "t1", "mx"), item("k2", "t2", "my")],
            dead: vec![dead("mz", "not json t3")],
        };
        let report = compare(&plan, &ledger, &found);
        assert_eq!(classes(&report), vec!["not-accepted"]);
        assert_eq!(report.outcomes["unanswered-stored"], 1);
        assert_eq!(report.outcomes["unanswered-dead-lettered"], 1);
        assert_eq!(report.unanswered, 2);
    }

    #[test]
    fn stored_and_dead_lettered_is_doubled_and_stored_under_another_key_is_wrong() {
        let plan = small_plan();
        let ledger = vec![accepted("m1"), None, None, None, accepted("m5")];
        let found = Found {
            items: vec![item("k9", "t1", "m1")],
            dead: vec![
                dead("m1", r#"{"eventId":"k1","tag":"t1"}"#),
                dead("m5", "not json t3"),
            ],
        };
        let report = compare(&plan, &ledger, &found);
        assert_eq!(
            classes(&report),
            vec!["doubled", "unjustified-dead-letter", "wrong-answer"]
        );
    }

    #[test]
    fn answers_against_promises() {
        let mut plan = small_plan();
        plan[2].expect = Expect::Refuse(400);
        plan[3].expect = Expect::Refuse(403);
        let ledger = vec![
            Some(Answer {
                sent: Sent::Refused(403),
                receipt: None,
                malformed: false,
            }),
            Some(Answer {
                sent: Sent::Refused(503),
                receipt: None,
                malformed: false,
            }),
            accepted("m3"),
            Some(Answer {
                sent: Sent::Refused(401),
                receipt: None,
                malformed: false,
            }),
            Some(Answer {
                sent: Sent::Refused(200),
                receipt: None,
                malformed: true,
            }),
        ];
        let mut report = Report::default();
        let problems = check_answers(&plan, &ledger, &mut report);
        let classes: Vec<_> = problems.iter().map(Problem::class).collect();
        assert_eq!(classes, vec!["wrong-answer"; 4]);
        assert_eq!(report.sent, 5);
        assert_eq!(report.refused[&403], 1);
    }

    #[test]
    fn the_message_id_is_read_from_sqs_xml() {
        let xml = r#"<?xml version="1.0"?><SendMessageResponse xmlns="x"><SendMessageResult><MessageId>abc-1</MessageId></SendMessageResult></SendMessageResponse>"#;
        assert_eq!(message_id_of(xml).as_deref(), Some("abc-1"));
        assert_eq!(message_id_of("{\"message\":\"ok\"}"), None);
        assert_eq!(
            message_id_of("<SendMessageResponse><MessageId></MessageId>"),
            None
        );
    }
}
