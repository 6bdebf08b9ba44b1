//! user-api: `POST /users` (REST API from `openapi.yaml`, Basic auth) validates the body against
//! the `NewUser` model (`400 Invalid request body`), queues it and answers `202 {"messageId"}`,
//! the request's id; the consumer creates the user (item `kind = user`, `messageId` = that id)
//! with an email claim in one transaction, or records the status `EMAIL_TAKEN` or `INVALID`
//! (item `message#<id>`, `kind = status`). A body is never a reason to dead-letter: only a table
//! it cannot write (README "Every accepted request reaches a terminal state";
//! `local/gateway/tests/e2e_user_api.rs`). So the plan has no poison: its invalid requests are
//! either refused at the front door (`400`, `401`, `403`) or accepted and recorded `INVALID` (an
//! unpaired surrogate in the name, which the model accepts and DynamoDB cannot store).
//!
//! A duplicate (the same body again) is a new request with a new id: one of the two is
//! `CREATED`, the other `EMAIL_TAKEN`; so is every create of a same-email group but one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::sqs_buffer::{
    Answer, Auth, DeadLetter, Expect, Planned, check_answers, credentials, dead_letters,
    queue_depth, queue_url, table_name, text,
};
use super::{Kind, Problem, Report, Sent, Target, Workload};

/// One user, status or claim item of the users table, as the account needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// `kind = user`.
    User {
        user_id: String,
        message_id: String,
        email: String,
        name: String,
    },
    /// `kind = status`: `EMAIL_TAKEN` or `INVALID`.
    Status { message_id: String, state: String },
}

/// What the account read from moto.
#[derive(Debug, Clone, Default)]
pub(crate) struct Found {
    pub(crate) items: Vec<Item>,
    pub(crate) dead: Vec<DeadLetter>,
}

/// The email as the consumer claims it (`NewUser::normalized_email`: trimmed, lower case).
fn normalized(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The planned requests for `count` requests from `seed`. `key` is the normalized email of a
/// body that can be queued.
pub(crate) fn plan(seed: u64, count: usize) -> Vec<Planned> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let run = format!("{:08x}", rng.u32(..));
    let mut plan: Vec<Planned> = Vec::with_capacity(count);
    let mut duplicates: Vec<(usize, usize)> = Vec::new();
    let mut unit = 0usize;
    let create = |kind: Kind, tag: &str, email: &str, body: String| Planned {
        kind,
        body,
        tag: tag.to_owned(),
        key: Some(normalized(email)),
        auth: Auth::Good,
        expect: Expect::Accept,
    };
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
        let email = format!("u-{tag}@example.com");
        let good = |rng: &mut fastrand::Rng| {
            let body = if rng.bool() {
                json!({"name": format!("User {tag}"), "email": email, "locale": "en-GB"})
            } else {
                json!({"name": format!("User {tag}"), "email": email})
            };
            create(Kind::Good, &tag, &email, body.to_string())
        };
        let roll = rng.u32(0..1000);
        if roll < 620 {
            plan.push(good(&mut rng));
        } else if roll < 700 {
            plan.push(good(&mut rng));
            duplicates.push((plan.len() + rng.usize(1..5), plan.len() - 1));
        } else if roll < 820 {
            let valid = json!({"name": format!("User {tag}"), "email": email}).to_string();
            let refused = |body: String, auth: Auth, status: u16| Planned {
                kind: Kind::Invalid,
                body,
                tag: tag.clone(),
                key: None,
                auth,
                expect: Expect::Refuse(status),
            };
            plan.push(match rng.u32(0..8) {
                0 => refused(json!({"name": tag}).to_string(), Auth::Good, 400),
                1 => refused(
                    json!({"name": tag, "email": "not-an-address"}).to_string(),
                    Auth::Good,
                    400,
                ),
                2 => refused(
                    json!({"name": tag, "email": email, "admin": true}).to_string(),
                    Auth::Good,
                    400,
                ),
                // Valid for the model, refused by SQS (InvalidMessageContents): 400.
                3 => refused(
                    json!({"name": format!("Odd \u{FFFE} {tag}"), "email": email}).to_string(),
                    Auth::Good,
                    400,
                ),
                4 => refused(valid, Auth::WrongPassword, 403),
                5 => refused(valid, Auth::Missing, 401),
                // An unpaired surrogate: the model accepts it, the consumer records INVALID.
                _ => {
                    let mut invalid = create(
                        Kind::Invalid,
                        &tag,
                        &email,
                        format!(r#"{{"name":"\ud800 {tag}","email":"{email}"}}"#),
                    );
                    invalid.expect = Expect::Accept;
                    invalid
                }
            });
        } else if roll < 845 {
            // 3-5 creates of one email at once, each with its own name; one in upper case.
            let members = rng.usize(3..=5);
            let upper = rng.usize(..members);
            for member in 0..members {
                let tag = format!("{tag}.{member}");
                let sent = if member == upper {
                    email.to_uppercase()
                } else {
                    email.clone()
                };
                let body = json!({"name": format!("Twin {tag}"), "email": sent}).to_string();
                plan.push(create(Kind::SameKey, &tag, &email, body));
            }
        } else {
            plan.push(good(&mut rng));
        }
    }
    plan.truncate(count);
    plan
}

/// The user-api workload.
pub struct UserApi {
    plan: Vec<Planned>,
    ledger: Mutex<Vec<Option<Answer>>>,
}

impl UserApi {
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
            .post(format!("{base}/users"))
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
            return Ok(unanswered());
        };
        let id = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["messageId"].as_str().map(str::to_owned))
            .filter(|id| !id.is_empty());
        Ok(match id {
            Some(id) if status == 202 => Answer {
                sent: Sent::Accepted,
                receipt: Some(id),
                malformed: false,
            },
            _ => Answer {
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

fn id_of(plan: &[Planned], index: usize) -> String {
    format!(
        "{} (request {index}, {:?})",
        plan[index].tag, plan[index].kind
    )
}

/// The name a body asks for (`None` for a body serde cannot read, such as an unpaired surrogate).
fn name_of(body: &str) -> Option<String> {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["name"].as_str().map(str::to_owned))
}

/// The account: the ledger against what moto holds (pure, for the tests).
pub(crate) fn compare(plan: &[Planned], ledger: &[Option<Answer>], found: &Found) -> Report {
    let mut report = Report {
        pattern: "user-api".into(),
        ..Report::default()
    };
    let mut problems = check_answers(plan, ledger, &mut report);
    let sent = |i: usize| ledger.get(i).and_then(Option::as_ref).map(|a| &a.sent);
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (index, answer) in ledger.iter().enumerate() {
        if let Some(Answer {
            sent: Sent::Accepted,
            receipt: Some(id),
            ..
        }) = answer
        {
            by_id.insert(id.as_str(), index);
        }
    }
    let mut by_body: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_user: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (index, planned) in plan.iter().enumerate() {
        by_body
            .entry(planned.body.as_str())
            .or_default()
            .push(index);
        if let (Some(email), Some(name)) = (&planned.key, name_of(&planned.body)) {
            by_user
                .entry((email.clone(), name))
                .or_default()
                .push(index);
        }
    }
    // Requests that may have reached the queue unacknowledged: each may own one item.
    let mut unanswered: HashSet<usize> = (0..plan.len())
        .filter(|i| sent(*i) == Some(&Sent::Unanswered) && plan[*i].expect == Expect::Accept)
        .collect();
    let mut terminal: Vec<Vec<&'static str>> = vec![Vec::new(); plan.len()];
    // Users per email, with the request that created each (None: an unanswered one).
    let mut users: BTreeMap<String, Vec<Option<usize>>> = BTreeMap::new();
    let mut statuses_unmatched = Vec::new();
    for item in &found.items {
        match item {
            Item::User {
                user_id,
                message_id,
                email,
                name,
            } => {
                if let Some(index) = by_id.get(message_id.as_str()) {
                    terminal[*index].push("created");
                    users.entry(email.clone()).or_default().push(Some(*index));
                    let planned = &plan[*index];
                    if planned.key.as_deref() != Some(email.as_str())
                        || name_of(&planned.body).as_deref() != Some(name.as_str())
                    {
                        problems.push(Problem::WrongAnswer(format!(
                            "user {user_id}: not the body of {}",
                            id_of(plan, *index)
                        )));
                    }
                    continue;
                }
                let owner = by_user
                    .get(&(email.clone(), name.clone()))
                    .and_then(|members| members.iter().find(|i| unanswered.contains(i)))
                    .copied();
                match owner {
                    Some(index) => {
                        unanswered.remove(&index);
                        users.entry(email.clone()).or_default().push(None);
                        report.count("unanswered-created");
                    }
                    None => problems.push(Problem::NotAccepted(format!(
                        "user {user_id}: created for request id {message_id}, which no accepted request got"
                    ))),
                }
            }
            Item::Status { message_id, state } => {
                let outcome = match state.as_str() {
                    "EMAIL_TAKEN" => "email-taken",
                    "INVALID" => "invalid",
                    _ => {
                        problems.push(Problem::WrongAnswer(format!(
                            "status of {message_id}: unknown state {state}"
                        )));
                        continue;
                    }
                };
                match by_id.get(message_id.as_str()) {
                    Some(index) => terminal[*index].push(outcome),
                    None => statuses_unmatched.push((message_id, outcome)),
                }
            }
        }
    }
    for dead in &found.dead {
        if let Some(index) = dead
            .attributes
            .get("requestId")
            .and_then(|id| by_id.get(id.as_str()))
        {
            terminal[*index].push("dead-lettered");
            continue;
        }
        let owner = by_body
            .get(dead.body.as_str())
            .and_then(|members| members.iter().find(|i| unanswered.contains(i)))
            .copied();
        match owner {
            Some(index) => {
                unanswered.remove(&index);
                report.count("unanswered-dead-lettered");
            }
            None => problems.push(Problem::NotAccepted(format!(
                "dead letter {}: no accepted request sent it",
                dead.message_id
            ))),
        }
    }
    // A status carries no body: one for an id no answer gave is allowed while unanswered
    // requests remain that own nothing else.
    for (message_id, outcome) in statuses_unmatched {
        if let Some(index) = unanswered.iter().next().copied() {
            unanswered.remove(&index);
            report.count(&format!("unanswered-{outcome}"));
        } else {
            problems.push(Problem::NotAccepted(format!(
                "status of {message_id}: an id no accepted request got"
            )));
        }
    }
    for (email, creators) in &users {
        if creators.len() > 1 {
            let ids: Vec<String> = creators
                .iter()
                .map(|c| c.map_or("an unanswered request".to_owned(), |i| id_of(plan, i)))
                .collect();
            problems.push(Problem::Doubled(format!(
                "{} users share one email ({}): {}",
                creators.len(),
                plan.iter()
                    .find(|p| p.key.as_deref() == Some(email.as_str()))
                    .map_or("?", |p| p.tag.as_str()),
                ids.join(", ")
            )));
        }
    }
    for (index, states) in terminal.iter().enumerate() {
        if sent(index) != Some(&Sent::Accepted) {
            continue;
        }
        let planned = &plan[index];
        let id = id_of(plan, index);
        match states.len() {
            0 => problems.push(Problem::Lost(id.clone())),
            1 => {}
            _ => problems.push(Problem::Doubled(format!("{id}: {}", states.join(" and ")))),
        }
        for state in states {
            report.count(state);
        }
        let creatable = planned.kind != Kind::Invalid;
        for state in states {
            match *state {
                "dead-lettered" if creatable => {
                    problems.push(Problem::UnjustifiedDeadLetter(id.clone()))
                }
                "invalid" if creatable => problems.push(Problem::WrongAnswer(format!(
                    "{id}: a valid body recorded INVALID"
                ))),
                "created" | "email-taken" | "dead-lettered" if !creatable => problems.push(
                    Problem::WrongAnswer(format!("{id}: an unpaired surrogate ended {state}")),
                ),
                "email-taken" => {
                    let others = planned
                        .key
                        .as_ref()
                        .and_then(|e| users.get(e))
                        .is_some_and(|c| c.iter().any(|c| *c != Some(index)));
                    if !others {
                        problems.push(Problem::WrongAnswer(format!(
                            "{id}: EMAIL_TAKEN, but no other user holds the email"
                        )));
                    }
                }
                _ => {}
            }
        }
    }
    problems.sort();
    report.problems = problems;
    report
}

impl Workload for UserApi {
    fn name(&self) -> &'static str {
        "user-api"
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
            let depth = queue_depth(&target.sdk, &queue_url(target, "UserQueue")?).await?;
            Ok((depth > 0).then(|| format!("{depth} messages on UserQueue")))
        })
    }

    fn account<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Report>> {
        Box::pin(async move {
            let table = table_name(target, "UsersTable")?;
            let dynamodb = aws_sdk_dynamodb::Client::new(&target.sdk);
            let items = testkit::scan_all(&dynamodb, &table)
                .await
                .into_iter()
                .filter_map(|item| match text(&item, "kind").as_deref() {
                    Some("user") => Some(Item::User {
                        user_id: text(&item, "userId").unwrap_or_default(),
                        message_id: text(&item, "messageId").unwrap_or_default(),
                        email: text(&item, "email").unwrap_or_default(),
                        name: text(&item, "name").unwrap_or_default(),
                    }),
                    Some("status") => Some(Item::Status {
                        message_id: text(&item, "messageId").unwrap_or_default(),
                        state: text(&item, "state").unwrap_or_default(),
                    }),
                    // Email claims: written in one transaction with their user.
                    _ => None,
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
    fn the_plan_is_fixed_by_the_seed_and_mixes_its_kinds() {
        assert_eq!(plan(11, 400), plan(11, 400));
        assert_ne!(plan(11, 400), plan(12, 400));
        let p = plan(11, 2000);
        assert_eq!(p.len(), 2000);
        let share = |k: Kind| p.iter().filter(|r| r.kind == k).count() as f64 / 2000.0;
        assert!((0.6..0.8).contains(&share(Kind::Good)));
        assert!((0.04..0.12).contains(&share(Kind::Duplicate)));
        assert_eq!(share(Kind::Poison), 0.0, "a body never dead-letters here");
        assert!((0.08..0.16).contains(&share(Kind::Invalid)));
        assert!((0.06..0.14).contains(&share(Kind::SameKey)));
        let accepted_invalid = p
            .iter()
            .filter(|r| r.kind == Kind::Invalid && r.expect == Expect::Accept)
            .count();
        assert!(
            accepted_invalid > 20,
            "some invalid bodies reach the consumer"
        );
        // Emails are unique per good create, and per run.
        let emails = |p: &[Planned]| -> HashSet<String> {
            p.iter()
                .filter(|r| r.kind == Kind::Good)
                .filter_map(|r| r.key.clone())
                .collect()
        };
        let goods = p.iter().filter(|r| r.kind == Kind::Good).count();
        assert_eq!(emails(&p).len(), goods);
        assert!(emails(&plan(1, 300)).is_disjoint(&emails(&plan(2, 300))));
    }

    #[test]
    fn duplicates_repeat_their_original_and_groups_share_one_email() {
        let p = plan(4, 2000);
        for (i, r) in p
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == Kind::Duplicate)
        {
            let original = p[..i]
                .iter()
                .rposition(|o| o.kind == Kind::Good && o.body == r.body)
                .expect("an original");
            assert!(i - original <= 8);
        }
        let mut i = 0;
        let mut groups = 0;
        while i < p.len() {
            if p[i].kind != Kind::SameKey {
                i += 1;
                continue;
            }
            let mut j = i;
            while j < p.len() && p[j].kind == Kind::SameKey && p[j].key == p[i].key {
                j += 1;
            }
            if j < p.len() {
                assert!((3..=5).contains(&(j - i)));
            }
            let bodies: HashSet<&str> = p[i..j].iter().map(|r| r.body.as_str()).collect();
            assert_eq!(bodies.len(), j - i, "each member its own name");
            assert!(p[i..j].iter().any(|r| r.body.contains("@EXAMPLE.COM")) || j - i < 3);
            groups += 1;
            i = j;
        }
        assert!(groups > 20);
    }

    fn create(kind: Kind, tag: &str, email: &str, name: &str) -> Planned {
        Planned {
            kind,
            body: json!({"name": name, "email": email}).to_string(),
            tag: tag.into(),
            key: Some(normalized(email)),
            auth: Auth::Good,
            expect: Expect::Accept,
        }
    }

    fn accepted(id: &str) -> Option<Answer> {
        Some(Answer {
            sent: Sent::Accepted,
            receipt: Some(id.into()),
            malformed: false,
        })
    }

    fn user(id: &str, email: &str, name: &str) -> Item {
        Item::User {
            user_id: format!("user-{id}"),
            message_id: id.into(),
            email: email.into(),
            name: name.into(),
        }
    }

    fn status(id: &str, state: &str) -> Item {
        Item::Status {
            message_id: id.into(),
            state: state.into(),
        }
    }

    fn classes(report: &Report) -> Vec<&'static str> {
        report.problems.iter().map(Problem::class).collect()
    }

    /// A good create, its duplicate, two creates of one email, a surrogate.
    fn small_plan() -> Vec<Planned> {
        let mut invalid = create(Kind::Invalid, "t4", "i@x.co", "?");
        invalid.body = r#"{"name":"\ud800 t4","email":"i@x.co"}"#.into();
        vec![
            create(Kind::Good, "t1", "a@x.co", "A"),
            create(Kind::Duplicate, "t1", "a@x.co", "A"),
            create(Kind::SameKey, "t2.0", "b@x.co", "B0"),
            create(Kind::SameKey, "t2.1", "B@X.CO", "B1"),
            invalid,
        ]
    }

    #[test]
    fn one_created_per_email_and_the_rest_email_taken_is_a_kept_promise() {
        let ledger = vec![
            accepted("m1"),
            accepted("m2"),
            accepted("m3"),
            accepted("m4"),
            accepted("m5"),
        ];
        let found = Found {
            items: vec![
                // The duplicate won the race: either order is fine.
                user("m2", "a@x.co", "A"),
                status("m1", "EMAIL_TAKEN"),
                user("m4", "b@x.co", "B1"),
                status("m3", "EMAIL_TAKEN"),
                status("m5", "INVALID"),
            ],
            dead: vec![],
        };
        let report = compare(&small_plan(), &ledger, &found);
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.outcomes["created"], 2);
        assert_eq!(report.outcomes["email-taken"], 2);
        assert_eq!(report.outcomes["invalid"], 1);
    }

    #[test]
    fn two_users_of_one_email_a_lost_request_and_a_baseless_email_taken_are_found() {
        let ledger = vec![
            accepted("m1"),
            accepted("m2"),
            accepted("m3"),
            accepted("m4"),
            accepted("m5"),
        ];
        let found = Found {
            items: vec![
                status("m1", "EMAIL_TAKEN"), // nobody holds a@x.co
                user("m3", "b@x.co", "B0"),
                user("m4", "b@x.co", "B1"),
                user("m5", "i@x.co", "?"), // the surrogate created a user
            ],
            dead: vec![],
        };
        let report = compare(&small_plan(), &ledger, &found);
        assert_eq!(
            classes(&report),
            vec![
                "lost",
                "doubled",
                "wrong-answer",
                "wrong-answer",
                "wrong-answer"
            ],
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn unanswered_creates_may_own_items_and_refused_ones_may_not() {
        let mut plan = small_plan();
        plan.push(create(Kind::Good, "t5", "c@x.co", "C"));
        let ledger = vec![
            Some(unanswered()),
            accepted("m2"),
            Some(unanswered()),
            Some(Answer {
                sent: Sent::Refused(503),
                receipt: None,
                malformed: false,
            }),
            None,
            accepted("m6"),
        ];
        let found = Found {
            items: vec![
                user("x1", "a@x.co", "A"),   // the unanswered original won
                status("m2", "EMAIL_TAKEN"), // so the duplicate is taken
                status("x3", "EMAIL_TAKEN"), // the unanswered t2.0: no body, allowed
                user("x4", "b@x.co", "B1"),  // the refused t2.1: not accepted
            ],
            dead: vec![DeadLetter {
                message_id: "d6".into(),
                body: plan[5].body.clone(),
                attributes: BTreeMap::from([("requestId".to_owned(), "m6".to_owned())]),
            }],
        };
        let report = compare(&plan, &ledger, &found);
        assert_eq!(
            classes(&report),
            vec!["not-accepted", "unjustified-dead-letter"],
            "{:?}",
            report.problems
        );
        assert_eq!(report.outcomes["unanswered-created"], 1);
        assert_eq!(report.outcomes["unanswered-email-taken"], 1);
        assert_eq!(report.outcomes["dead-lettered"], 1);
    }
}
