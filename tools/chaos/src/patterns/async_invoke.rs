//! async-invoke: `POST /jobs` (SigV4, service `execute-api`) answers `202 {"jobId"}` once Lambda
//! queued the asynchronous invoke of the processor, which runs the job (`{"seconds": n}` sleeps
//! n seconds; `"failure": "..."` makes it fail) and records `SUCCEEDED` in the jobs table; a job
//! that fails is retried by Lambda (`MaximumRetryAttempts`), then recorded `FAILED` with its
//! error by the error handler; what even that cannot record goes to `FailureBus`, whose archive
//! a replay sends back to the error handler (README, "The failure chain and replay").
//!
//! The plan: good jobs of 1-2 s; duplicates (the same body again a few requests later: the API
//! has no idempotency key, so it is a second job with its own id, and both must succeed);
//! groups of 3-5 identical jobs submitted at once (distinct ids, all succeed); poison jobs
//! (`failure` set: they end `FAILED` with their message, through the error handler); jobs longer
//! than the processor's timeout (`ProcessorTimeout` + 3 s: they end `FAILED` with "Task timed
//! out"); bodies the API's model refuses (400). The account ([`compare`]) reads the table and
//! asks the API for each accepted job's status too.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use futures::FutureExt as _;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Kind, Problem, Report, Sent, Target, Workload};

/// What a job of the plan does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Job {
    /// Sleeps, then succeeds: `{"seconds": n}`.
    Sleep(u64),
    /// Fails with its message every time: `{"seconds": 1, "failure": "..."}`.
    Poison(String),
    /// Runs past the processor's timeout (its body is made at send time from the stack's
    /// `ProcessorTimeout`).
    Timeout,
    /// A body the API's model refuses.
    Invalid(String),
}

/// One planned request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Planned {
    kind: Kind,
    job: Job,
    /// For `Duplicate`: the index of the original.
    original: Option<usize>,
}

/// What one request got back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    sent: Sent,
    /// The body sent.
    body: String,
    /// The job id of an accepted job.
    job_id: Option<String>,
    /// A 2xx without a job id (or with a `Location` that is not the job's).
    malformed: bool,
}

/// An item of the jobs table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct JobItem {
    status: String,
    /// `errorMessage` of a failed job.
    error: String,
    /// `parameters` as JSON (the processor stores the client's body as a JSON string).
    parameters: Option<Value>,
    /// `leaseExpiresAt` of a running job, in milliseconds since the epoch.
    lease_expires: Option<u64>,
}

/// What moto holds for the pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Found {
    jobs: BTreeMap<String, JobItem>,
    /// Events `FailureArchive` holds (failures the error handler could not record).
    archived: u64,
}

/// The async-invoke workload.
#[derive(Debug)]
pub struct AsyncInvoke {
    tag: String,
    plan: Vec<Planned>,
    ledger: Mutex<Vec<Option<Answer>>>,
    /// Archive events already replayed (a replay is started when more arrive).
    replayed: AtomicU64,
}

/// Most jobs planned past the processor's timeout (each holds an environment for its attempts).
const MAX_TIMEOUTS: usize = 20;

/// A `RUNNING` job whose lease ended this long ago is stuck, not on its way: Lambda's retries
/// come 1-2 s apart locally and a throttled event waits at most 5 s between tries (the local
/// gateway's backoff), so no delivery of it is left. `pending` stops waiting for it (the account
/// reports it lost) instead of holding the run for the whole drain bound.
const STUCK_MILLIS: u64 = 600_000;

/// A failure the run's faults explain: an injected DynamoDB error, a timeout (the stall), a
/// killed execution environment (or one a gateway restart interrupted).
fn by_fault(message: &str) -> bool {
    [
        "injected fault",
        "Task timed out",
        "Runtime exited with error",
        "execution environment stopped",
    ]
    .iter()
    .any(|m| message.contains(m))
}

fn body_of(job: &Job, timeout_seconds: u64) -> String {
    match job {
        Job::Sleep(n) => json!({"seconds": n}).to_string(),
        Job::Poison(message) => json!({"seconds": 1, "failure": message}).to_string(),
        Job::Timeout => json!({"seconds": (timeout_seconds + 3).min(600)}).to_string(),
        Job::Invalid(body) => body.clone(),
    }
}

/// The plan: see the module's documentation for the mix.
fn plan(tag: &str, rng: &mut fastrand::Rng, count: usize) -> Vec<Planned> {
    let mut plan: Vec<Planned> = Vec::with_capacity(count);
    let mut timeouts = 0;
    let invalid = |i: usize, rng: &mut fastrand::Rng| -> String {
        match rng.usize(..7) {
            0 => r#"{"seconds": 0}"#.into(),
            1 => r#"{"seconds": "1"}"#.into(),
            2 => "{}".into(),
            3 => r#"{"seconds": 1, "extra": true}"#.into(),
            4 => format!("not json {tag} {i}"),
            5 => r#"{"seconds": 601}"#.into(),
            _ => json!({"seconds": 1, "failure": "f".repeat(257)}).to_string(),
        }
    };
    while plan.len() < count {
        let i = plan.len();
        let left = count - i;
        let roll = rng.f64();
        let single = |kind, job| Planned {
            kind,
            job,
            original: None,
        };
        // The first request runs past the timeout, so that every run has one.
        if (i == 0 && count >= 10) || (roll < 0.015 && timeouts < MAX_TIMEOUTS) {
            timeouts += 1;
            plan.push(single(Kind::Poison, Job::Timeout));
        } else if roll < 0.10 && left >= 3 {
            let n = rng.usize(3..=5).min(left);
            let job = Job::Sleep(1);
            for _ in 0..n {
                plan.push(single(Kind::SameKey, job.clone()));
            }
        } else if roll < 0.18 {
            let original = (i.saturating_sub(8)..i.saturating_sub(1))
                .rev()
                .find(|j| plan[*j].kind == Kind::Good);
            match original {
                Some(j) => plan.push(Planned {
                    kind: Kind::Duplicate,
                    job: plan[j].job.clone(),
                    original: Some(j),
                }),
                None => plan.push(single(Kind::Good, Job::Sleep(rng.u64(1..=2)))),
            }
        } else if roll < 0.23 {
            plan.push(single(
                Kind::Poison,
                Job::Poison(format!("poison {tag} {i}")),
            ));
        } else if roll < 0.30 {
            plan.push(single(Kind::Invalid, Job::Invalid(invalid(i, rng))));
        } else {
            plan.push(single(Kind::Good, Job::Sleep(rng.u64(1..=2))));
        }
    }
    plan.truncate(count);
    plan
}

impl AsyncInvoke {
    /// A plan of `count` requests fixed by `seed`.
    pub fn new(seed: u64, count: usize) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let tag = format!("{:08x}", rng.u32(..));
        let plan = plan(&tag, &mut rng, count);
        AsyncInvoke {
            tag,
            ledger: Mutex::new(vec![None; plan.len()]),
            plan,
            replayed: AtomicU64::new(0),
        }
    }

    fn answers(&self) -> Vec<Option<Answer>> {
        self.ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn read(&self, target: &Target) -> Result<Found> {
        let table = target.pattern["tables"]["JobsTable"]
            .as_str()
            .context("no JobsTable in the state file")?;
        let dynamodb = aws_sdk_dynamodb::Client::new(&target.sdk);
        let mut found = Found::default();
        let mut start = None;
        loop {
            let page = dynamodb
                .scan()
                .table_name(table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .with_context(|| format!("scanning {table}"))?;
            for item in page.items() {
                let s = |name: &str| {
                    item.get(name)
                        .and_then(|v| v.as_s().ok())
                        .cloned()
                        .unwrap_or_default()
                };
                let parameters = match item.get("parameters") {
                    Some(AttributeValue::S(text)) => serde_json::from_str(text).ok(),
                    Some(other) => Some(to_json(other)),
                    None => None,
                };
                let lease_expires = item
                    .get("leaseExpiresAt")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse().ok());
                found.jobs.insert(
                    s("jobId"),
                    JobItem {
                        status: s("status"),
                        error: s("errorMessage"),
                        parameters,
                        lease_expires,
                    },
                );
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                break;
            }
        }
        if let Some(archive) = target.pattern["outputs"]["FailureArchiveName"].as_str() {
            let events = aws_sdk_eventbridge::Client::new(&target.sdk);
            let described = events
                .describe_archive()
                .archive_name(archive)
                .send()
                .await
                .context("describing FailureArchive")?;
            found.archived = described.event_count().max(0) as u64;
        }
        Ok(found)
    }

    /// The README's recovery: replay `FailureArchive` onto `FailureBus`, whose `ReplayRule`
    /// hands each failure back to the error handler.
    async fn replay(&self, target: &Target, n: u64) -> Result<()> {
        let outputs = &target.pattern["outputs"];
        let (Some(archive), Some(bus)) = (
            outputs["FailureArchiveName"].as_str(),
            outputs["FailureBusName"].as_str(),
        ) else {
            return Ok(());
        };
        let events = aws_sdk_eventbridge::Client::new(&target.sdk);
        let archive_arn = events
            .describe_archive()
            .archive_name(archive)
            .send()
            .await?
            .archive_arn
            .context("archive without ARN")?;
        let bus_arn = events
            .describe_event_bus()
            .name(bus)
            .send()
            .await?
            .arn
            .context("bus without ARN")?;
        let now = SystemTime::now();
        events
            .start_replay()
            .replay_name(format!("chaos-{}-{n}", self.tag))
            .event_source_arn(archive_arn)
            .event_start_time((now - Duration::from_secs(6 * 3600)).into())
            .event_end_time(now.into())
            .destination(
                aws_sdk_eventbridge::types::ReplayDestination::builder()
                    .arn(bus_arn)
                    .build()?,
            )
            .send()
            .await
            .context("starting a replay")?;
        eprintln!("chaos: async-invoke: {n} archived failures, replayed to the error handler");
        Ok(())
    }

    /// `GET /jobs/{id}` of every accepted job: status code and `status`.
    async fn api_statuses(
        &self,
        target: &Target,
        answers: &[Option<Answer>],
    ) -> HashMap<String, (u16, String)> {
        let ids: Vec<String> = answers
            .iter()
            .flatten()
            .filter_map(|a| a.job_id.clone())
            .collect();
        futures::stream::iter(ids)
            .map(|id| async move {
                let url = format!("{}/jobs/{id}", base(target));
                let got = signed(target, "GET", &url, "").await.ok()?;
                let status = got.status().as_u16();
                let body: Value = got.json().await.unwrap_or(Value::Null);
                Some((
                    id,
                    (
                        status,
                        body["status"].as_str().unwrap_or_default().to_owned(),
                    ),
                ))
            })
            .buffer_unordered(16)
            .filter_map(|x| async move { x })
            .collect()
            .await
    }
}

fn base(target: &Target) -> String {
    target.pattern["baseUrl"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A DynamoDB attribute as JSON (numbers as numbers).
fn to_json(value: &AttributeValue) -> Value {
    match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => serde_json::from_str(n).unwrap_or(Value::String(n.clone())),
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::M(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect::<serde_json::Map<_, _>>(),
        ),
        AttributeValue::L(l) => Value::Array(l.iter().map(to_json).collect()),
        _ => Value::Null,
    }
}

/// Sends `method url` with `body`, signed with SigV4 for `execute-api` with the state file's
/// `signing` credentials, as `local/gateway/tests/common/signing.rs` signs.
async fn signed(target: &Target, method: &str, url: &str, body: &str) -> Result<reqwest::Response> {
    let s = &target.signing;
    let identity = aws_credential_types::Credentials::new(
        s["accessKeyId"].as_str().unwrap_or_default(),
        s["secretAccessKey"].as_str().unwrap_or_default(),
        None,
        None,
        "chaos",
    )
    .into();
    let region = s["region"].as_str().unwrap_or(&target.region);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("execute-api")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()?
        .into();
    let headers = [("content-type", "application/json")];
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body.as_bytes()),
    )?;
    let (instructions, _) = sign(signable, &params)?.into_parts();
    let mut request = target
        .http
        .request(method.parse()?, url)
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (name, value) in instructions.headers() {
        request = request.header(name, value);
    }
    Ok(request.send().await?)
}

/// Compares the ledger with moto's contents and the API's answers (`api`: job id to status
/// code and `status`, for the jobs the API answered in the account).
fn compare(
    plan: &[Planned],
    answers: &[Option<Answer>],
    found: &Found,
    api: &HashMap<String, (u16, String)>,
) -> Report {
    let mut report = Report {
        pattern: "async-invoke".into(),
        ..Report::default()
    };
    let mut problems = Vec::new();
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for (i, answer) in answers.iter().enumerate() {
        let Some(answer) = answer else { continue };
        report.answered(&answer.sent);
        let p = &plan[i];
        if answer.malformed {
            problems.push(Problem::WrongAnswer(format!(
                "request {i}: a 2xx without a job id or with another Location"
            )));
        }
        match (&answer.sent, p.kind) {
            (Sent::Refused(status), Kind::Invalid) if (400..500).contains(status) => {
                report.count("refused-invalid");
                continue;
            }
            (Sent::Refused(status), _) if (400..500).contains(status) => {
                problems.push(Problem::WrongAnswer(format!(
                    "request {i} ({:?}) refused with {status}",
                    p.kind
                )));
                continue;
            }
            (Sent::Accepted, Kind::Invalid) => problems.push(Problem::WrongAnswer(format!(
                "request {i}: the invalid body {:?} was accepted",
                answer.body
            ))),
            _ => {}
        }
        let (Sent::Accepted, Some(id)) = (&answer.sent, &answer.job_id) else {
            continue;
        };
        if let Some(j) = ids.insert(id, i) {
            problems.push(Problem::Doubled(format!(
                "job id {id} given to requests {j} and {i}"
            )));
            continue;
        }
        let Some(job) = found.jobs.get(id.as_str()) else {
            problems.push(Problem::Lost(format!("job {id} (request {i}): no item")));
            continue;
        };
        let sent_parameters: Option<Value> = serde_json::from_str(&answer.body).ok();
        if job.parameters.is_some() && job.parameters != sent_parameters {
            problems.push(Problem::WrongAnswer(format!(
                "job {id} (request {i}) holds other parameters than sent"
            )));
        }
        if let Some((code, status)) = api.get(id.as_str())
            && (*code == 200 || *code == 404)
            && (*code == 404 || *status != job.status)
        {
            problems.push(Problem::WrongAnswer(format!(
                "GET /jobs/{id} answered {code} {status:?}, the table holds {}",
                job.status
            )));
        }
        match (job.status.as_str(), &p.job) {
            ("SUCCEEDED", Job::Sleep(_)) => report.count(match p.kind {
                Kind::Duplicate => "succeeded-duplicate",
                Kind::SameKey => "succeeded-concurrent",
                _ => "succeeded",
            }),
            ("SUCCEEDED", Job::Poison(_) | Job::Timeout) => {
                report.count("succeeded");
                problems.push(Problem::WrongAnswer(format!(
                    "job {id} (request {i}, {:?}) succeeded",
                    p.job
                )));
            }
            ("FAILED", Job::Poison(message)) if job.error.contains(message.as_str()) => {
                report.count("failed-poison");
            }
            ("FAILED", Job::Timeout) if job.error.contains("Task timed out") => {
                report.count("failed-timeout");
            }
            ("FAILED", _) if by_fault(&job.error) => report.count("failed-by-fault"),
            ("FAILED", job_kind) => {
                report.count("failed");
                problems.push(Problem::UnjustifiedDeadLetter(format!(
                    "job {id} (request {i}, {job_kind:?}) FAILED: {}",
                    job.error.chars().take(200).collect::<String>()
                )));
            }
            (status, _) => problems.push(Problem::Lost(format!(
                "job {id} (request {i}) never final: {status}, lease until {:?} ms",
                job.lease_expires
            ))),
        }
    }
    // Jobs no accepted request explains: an unanswered request with the same body may have
    // started one; anything else was never acknowledged.
    let mut unanswered: Vec<Option<Value>> = answers
        .iter()
        .flatten()
        .filter(|a| a.sent == Sent::Unanswered)
        .map(|a| serde_json::from_str(&a.body).ok())
        .collect();
    for (id, job) in &found.jobs {
        if ids.contains_key(id.as_str()) {
            continue;
        }
        let matching = unanswered
            .iter()
            .position(|body| body.is_some() && *body == job.parameters);
        match matching {
            Some(at) => {
                unanswered.swap_remove(at);
                report.count("unanswered-stored");
            }
            None => problems.push(Problem::NotAccepted(format!(
                "job {id} ({}) answers no accepted request",
                job.status
            ))),
        }
    }
    if found.archived > 0 {
        // Not a request's state: failures the error handler could not record at first (the
        // replay recorded them, so their jobs are counted above).
        report.count(&format!("archive-events-{}", found.archived));
    }
    problems.sort();
    report.problems = problems;
    report
}

/// Accepted jobs not yet `SUCCEEDED` or `FAILED` as of `now` (milliseconds since the epoch):
/// how many are on their way, and how many are stuck (`RUNNING` under a lease that ended more
/// than [`STUCK_MILLIS`] ago).
fn unfinished(answers: &[Option<Answer>], found: &Found, now: u64) -> (usize, usize) {
    let (mut waiting, mut stuck) = (0, 0);
    for id in answers
        .iter()
        .flatten()
        .filter(|a| a.sent == Sent::Accepted)
        .filter_map(|a| a.job_id.as_deref())
    {
        match found.jobs.get(id) {
            Some(j) if j.status == "SUCCEEDED" || j.status == "FAILED" => {}
            Some(j)
                if j.status == "RUNNING"
                    && j.lease_expires.is_some_and(|t| t + STUCK_MILLIS < now) =>
            {
                stuck += 1;
            }
            _ => waiting += 1,
        }
    }
    (waiting, stuck)
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl Workload for AsyncInvoke {
    fn name(&self) -> &'static str {
        "async-invoke"
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
            let timeout = target.pattern["parameters"]["ProcessorTimeout"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .or_else(|| target.pattern["parameters"]["ProcessorTimeout"].as_u64())
                .unwrap_or(900);
            let body = body_of(&self.plan[index].job, timeout);
            let url = format!("{}/jobs", base(target));
            let (sent, job_id, malformed) = match signed(target, "POST", &url, &body).await {
                Err(_) => (Sent::Unanswered, None, false),
                Ok(response) => {
                    let status = response.status().as_u16();
                    let location = response
                        .headers()
                        .get("location")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    match response.json::<Value>().await {
                        Err(_) if (200..300).contains(&status) => (Sent::Unanswered, None, false),
                        answer => {
                            let id = answer.ok().and_then(|v| {
                                v["jobId"]
                                    .as_str()
                                    .filter(|s| !s.is_empty())
                                    .map(str::to_owned)
                            });
                            let located = |id: &str| {
                                location
                                    .as_deref()
                                    .is_some_and(|l| l.ends_with(&format!("/jobs/{id}")))
                            };
                            match ((200..300).contains(&status), id) {
                                (true, Some(id)) if located(&id) => {
                                    (Sent::Accepted, Some(id), false)
                                }
                                (true, id) => (Sent::Refused(status), id, true),
                                (false, _) => (Sent::Refused(status), None, false),
                            }
                        }
                    }
                }
            };
            let answer = Answer {
                sent: sent.clone(),
                body,
                job_id,
                malformed,
            };
            self.ledger.lock().unwrap_or_else(|e| e.into_inner())[index] = Some(answer);
            sent
        }
        .boxed()
    }

    fn pending<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Option<String>>> {
        async move {
            let found = self.read(target).await?;
            let (left, stuck) = unfinished(&self.answers(), &found, now_millis());
            if left + stuck > 0 && found.archived > self.replayed.load(Ordering::Relaxed) {
                self.replayed.store(found.archived, Ordering::Relaxed);
                self.replay(target, found.archived).await?;
            }
            Ok((left > 0).then(|| {
                format!("{left} jobs not yet SUCCEEDED or FAILED ({stuck} stuck RUNNING)")
            }))
        }
        .boxed()
    }

    fn account<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Report>> {
        async move {
            let answers = self.answers();
            let found = self.read(target).await?;
            let api = self.api_statuses(target, &answers).await;
            Ok(compare(&self.plan, &answers, &found, &api))
        }
        .boxed()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn accepted(body: &str, id: &str) -> Option<Answer> {
        Some(Answer {
            sent: Sent::Accepted,
            body: body.into(),
            job_id: Some(id.into()),
            malformed: false,
        })
    }

    fn answer(sent: Sent, body: &str) -> Option<Answer> {
        Some(Answer {
            sent,
            body: body.into(),
            job_id: None,
            malformed: false,
        })
    }

    fn planned(kind: Kind, job: Job) -> Planned {
        Planned {
            kind,
            job,
            original: None,
        }
    }

    fn job(status: &str, error: &str, parameters: &str) -> JobItem {
        JobItem {
            status: status.into(),
            error: error.into(),
            parameters: serde_json::from_str(parameters).ok(),
            lease_expires: None,
        }
    }

    fn classes(report: &Report) -> Vec<&'static str> {
        report.problems.iter().map(Problem::class).collect()
    }

    #[test]
    fn the_plan_is_fixed_by_the_seed_and_mixes_every_kind() {
        let a = AsyncInvoke::new(7, 500);
        assert_eq!(a.plan, AsyncInvoke::new(7, 500).plan);
        assert_ne!(a.plan, AsyncInvoke::new(8, 500).plan);
        assert_eq!(a.plan.len(), 500);
        let mut kinds: BTreeMap<Kind, usize> = BTreeMap::new();
        for p in &a.plan {
            *kinds.entry(p.kind).or_default() += 1;
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
        let timeouts = a.plan.iter().filter(|p| p.job == Job::Timeout).count();
        assert!((1..=MAX_TIMEOUTS).contains(&timeouts), "{timeouts}");
        assert_eq!(a.plan[0].job, Job::Timeout, "every run has one");
        for p in &a.plan {
            if let Job::Poison(message) = &p.job {
                assert!(message.contains(&a.tag));
            }
        }
    }

    #[test]
    fn duplicates_repeat_their_original_byte_for_byte_a_few_requests_later() {
        let a = AsyncInvoke::new(3, 1000);
        let mut n = 0;
        for (i, p) in a.plan.iter().enumerate() {
            if p.kind == Kind::Duplicate {
                let j = p.original.unwrap();
                assert!(j < i && i - j <= 8);
                assert_eq!(a.plan[j].kind, Kind::Good);
                assert_eq!(body_of(&a.plan[j].job, 5), body_of(&p.job, 5));
                n += 1;
            }
        }
        assert!(n > 20);
    }

    #[test]
    fn bodies_are_what_the_model_takes_or_refuses() {
        let a = AsyncInvoke::new(9, 2000);
        for p in &a.plan {
            let body = body_of(&p.job, 5);
            let v: Option<Value> = serde_json::from_str(&body).ok();
            let valid = v.as_ref().is_some_and(|v| {
                let seconds = v["seconds"].as_u64().filter(|s| (1..=600).contains(s));
                let keys_ok = v
                    .as_object()
                    .is_some_and(|o| o.keys().all(|k| k == "seconds" || k == "failure"));
                let failure_ok = v
                    .get("failure")
                    .is_none_or(|f| f.as_str().is_some_and(|f| f.len() <= 256));
                seconds.is_some() && keys_ok && failure_ok
            });
            assert_eq!(valid, p.kind != Kind::Invalid, "{body}");
        }
        assert_eq!(body_of(&Job::Timeout, 5), r#"{"seconds":8}"#);
    }

    #[test]
    fn every_kind_of_job_in_its_justified_final_state_is_ok() {
        let plan = vec![
            planned(Kind::Good, Job::Sleep(1)),
            planned(Kind::Poison, Job::Poison("poison t 1".into())),
            planned(Kind::Poison, Job::Timeout),
            planned(Kind::Good, Job::Sleep(2)),
            planned(Kind::Invalid, Job::Invalid("{}".into())),
            planned(Kind::SameKey, Job::Sleep(1)),
        ];
        let answers = vec![
            accepted(r#"{"seconds":1}"#, "a"),
            accepted(r#"{"seconds":1,"failure":"poison t 1"}"#, "b"),
            accepted(r#"{"seconds":8}"#, "c"),
            accepted(r#"{"seconds":2}"#, "d"),
            answer(Sent::Refused(400), "{}"),
            answer(Sent::Unanswered, r#"{"seconds":1}"#),
        ];
        let found = Found {
            jobs: [
                ("a".to_owned(), job("SUCCEEDED", "", r#"{"seconds": 1}"#)),
                (
                    "b".to_owned(),
                    job(
                        "FAILED",
                        "job failed: poison t 1",
                        r#"{"seconds":1,"failure":"poison t 1"}"#,
                    ),
                ),
                (
                    "c".to_owned(),
                    job("FAILED", "Task timed out after 5.00 seconds", ""),
                ),
                (
                    "d".to_owned(),
                    job(
                        "FAILED",
                        "jobs table write failed: injected fault: internal server error",
                        r#"{"seconds":2}"#,
                    ),
                ),
                ("e".to_owned(), job("SUCCEEDED", "", r#"{"seconds":1}"#)),
            ]
            .into(),
            archived: 0,
        };
        let api = [("a".to_owned(), (200, "SUCCEEDED".to_owned()))].into();
        let report = compare(&plan, &answers, &found, &api);
        assert!(report.ok(), "{:?}", report.problems);
        for outcome in [
            "succeeded",
            "failed-poison",
            "failed-timeout",
            "failed-by-fault",
            "refused-invalid",
            "unanswered-stored",
        ] {
            assert_eq!(
                report.outcomes[outcome], 1,
                "{outcome}: {:?}",
                report.outcomes
            );
        }
        assert_eq!((report.sent, report.accepted, report.unanswered), (6, 4, 1));
        assert_eq!(unfinished(&answers, &found, 0), (0, 0));
    }

    #[test]
    fn lost_unfinished_unjustified_and_unexplained_jobs_are_reported() {
        let plan = vec![
            planned(Kind::Good, Job::Sleep(1)),
            planned(Kind::Good, Job::Sleep(1)),
            planned(Kind::Good, Job::Sleep(1)),
            planned(Kind::Poison, Job::Timeout),
            planned(Kind::Good, Job::Sleep(2)),
        ];
        let body = r#"{"seconds":1}"#;
        let answers = vec![
            accepted(body, "a"),
            accepted(body, "b"),
            accepted(body, "c"),
            accepted(r#"{"seconds":8}"#, "d"),
            answer(Sent::Refused(503), r#"{"seconds":2}"#),
        ];
        let found = Found {
            jobs: [
                ("b".to_owned(), job("RUNNING", "", body)),
                ("c".to_owned(), job("FAILED", "job failed: boom", body)),
                ("d".to_owned(), job("SUCCEEDED", "", r#"{"seconds":8}"#)),
                ("z".to_owned(), job("SUCCEEDED", "", r#"{"seconds":2}"#)),
            ]
            .into(),
            archived: 0,
        };
        let report = compare(&plan, &answers, &found, &HashMap::new());
        assert_eq!(
            classes(&report),
            [
                "lost",
                "lost",
                "not-accepted",
                "unjustified-dead-letter",
                "wrong-answer"
            ],
            "{:?}",
            report.problems
        );
        // a: no item yet; b: RUNNING under a lease that may still be retried.
        assert_eq!(unfinished(&answers, &found, 0), (2, 0));
        let mut found = found;
        found.jobs.get_mut("b").unwrap().lease_expires = Some(1_000);
        assert_eq!(
            unfinished(&answers, &found, 1_000 + STUCK_MILLIS - 1),
            (2, 0)
        );
        assert_eq!(
            unfinished(&answers, &found, 1_001 + STUCK_MILLIS),
            (1, 1),
            "stuck"
        );
    }

    #[test]
    fn an_invalid_body_accepted_a_good_one_refused_a_reused_id_and_a_stale_api_are_wrong() {
        let plan = vec![
            planned(Kind::Invalid, Job::Invalid("{}".into())),
            planned(Kind::Good, Job::Sleep(1)),
            planned(Kind::Good, Job::Sleep(1)),
            planned(Kind::Duplicate, Job::Sleep(1)),
        ];
        let body = r#"{"seconds":1}"#;
        let answers = vec![
            accepted("{}", "x"),
            answer(Sent::Refused(403), body),
            accepted(body, "a"),
            accepted(body, "a"),
        ];
        let found = Found {
            jobs: [
                (
                    "x".to_owned(),
                    job("FAILED", "invalid job parameters", "{}"),
                ),
                ("a".to_owned(), job("SUCCEEDED", "", body)),
            ]
            .into(),
            archived: 0,
        };
        let api = [("a".to_owned(), (404, String::new()))].into();
        let report = compare(&plan, &answers, &found, &api);
        assert_eq!(
            classes(&report),
            [
                "doubled",
                "unjustified-dead-letter",
                "wrong-answer",
                "wrong-answer",
                "wrong-answer"
            ],
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn faults_that_justify_a_failure() {
        assert!(by_fault("Task timed out after 5.00 seconds"));
        assert!(by_fault(
            "jobs table write failed: service error: injected fault: internal server error"
        ));
        assert!(by_fault("Runtime exited with error: signal: 9"));
        assert!(!by_fault("job failed: upstream timed out"));
        assert!(!by_fault("jobs table write failed: dispatch failure"));
    }
}
