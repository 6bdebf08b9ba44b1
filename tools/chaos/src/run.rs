//! The run: start the stack behind the fault proxy, send every planned request while the
//! schedule injects faults, wait for the stack to drain, and account for every request.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use serde_json::Value;

use crate::gateway::{Gateway, Launch};
use crate::patterns::{self, Report, Target, Workload};
use crate::proxy::{Proxy, Weather};
use crate::usage::Usage;

/// Bound on one HTTP request to an API. A healthy answer takes milliseconds; during a burst on
/// a 2-core machine an authorizer cold start and a queued moto call can stall it for seconds.
/// A request past it counts as unanswered (never as accepted), which the account allows.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Bound on the drain after the last request: every queue empty, every stream read, every job
/// final. 10,000 requests drain in minutes on a 2-core machine; the poison messages need their
/// `MaxReceiveCount` receives a visibility timeout apart. Only a stuck or lost request makes a
/// run wait this long, and the account then names it.
pub const DRAIN: Duration = Duration::from_secs(1800);

/// How often the drain asks each workload what is still pending. Each ask scans the pattern's
/// table in moto; asked every second, those scans were most of moto's work during the drain
/// (py-spy), slowing the very drain they measure. The drain's time is thus known to 5 s.
const DRAIN_POLL: Duration = Duration::from_secs(5);

/// The stack's parameters for the run, besides the templates' defaults. Short function timeouts
/// (3 s) let a stall of DynamoDB push invocations past them within a bounded run, and the
/// visibility timeouts follow the templates' own rule (6 x the consumer's timeout, the SQS
/// developer guide's advice for Lambda). Everything else, retries and receive counts included,
/// is the template's default: the run checks the patterns as they ship.
pub const PARAMETERS: &str = "SqsBuffer.ConsumerTimeout=3 SqsBuffer.QueueVisibilityTimeout=18 \
     UserApi.ConsumerTimeout=3 UserApi.QueueVisibilityTimeout=18 \
     KinesisStream.ConsumerTimeout=3 AsyncInvoke.ProcessorTimeout=5";

/// How long a storm of DynamoDB errors and latency lasts: by time, not by requests sent, so
/// the consumers working through their backlog meet it too, in a small run as in a large one.
const STORM: Duration = Duration::from_secs(5);

/// How long a stall of DynamoDB lasts, and how late each call in it is answered: past the
/// longest function timeout of [`PARAMETERS`] (5 s).
const STALL: Duration = Duration::from_secs(7);

/// What the run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// Requests over all patterns.
    pub requests: usize,
    /// Seed of the plan and of the fault schedule.
    pub seed: u64,
    /// The `local-gateway` executable.
    pub gateway: PathBuf,
    /// The repository root (the gateway runs there).
    pub root: PathBuf,
    /// moto's endpoint.
    pub moto: String,
    /// Folder for the gateway's log, state and the report.
    pub out: PathBuf,
    /// Requests in flight at once outside the burst.
    pub concurrency: usize,
    /// `ID=PATH` pairs handed to the gateway's `--function-binary`.
    pub function_binaries: Vec<String>,
    /// Inject faults (on by default; off to measure the healthy stack).
    pub faults: bool,
    /// The patterns to drive (state-file keys; default all of [`PATTERNS`]).
    pub patterns: Vec<String>,
}

/// One step of the fault schedule, at a share of the requests sent.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// DynamoDB calls meet this weather for [`STORM`], then calm again.
    Storm(Weather),
    /// Every DynamoDB call waits past the functions' timeouts, for a while.
    Stall,
    /// SIGKILL the execution environments running now (a share of them).
    KillEnvironments,
    /// SIGKILL the gateway and start it again.
    RestartGateway,
    /// The next `n` requests all go at once.
    Burst(usize),
}

/// The schedule for `requests` requests: the steps and the request index each starts at. The
/// seed moves each step by up to 3% of the run, and sets the storms' strength.
fn schedule(requests: usize, burst: usize, rng: &mut fastrand::Rng) -> Vec<(usize, Step)> {
    let at = |share: f64, rng: &mut fastrand::Rng| {
        let jitter = (rng.f64() - 0.5) * 0.06;
        (((share + jitter).clamp(0.0, 1.0)) * requests as f64) as usize
    };
    let storm = |rng: &mut fastrand::Rng| Weather {
        errors: 0.15 + rng.f64() * 0.15,
        delayed: 0.2,
        delay: Duration::from_millis(50 + rng.u64(0..150)),
    };
    let mut steps = vec![
        (at(0.12, rng), Step::Storm(storm(rng))),
        (at(0.22, rng), Step::KillEnvironments),
        (at(0.38, rng), Step::Stall),
        (at(0.50, rng), Step::RestartGateway),
        (at(0.62, rng), Step::Burst(burst)),
        (at(0.72, rng), Step::Storm(storm(rng))),
        (at(0.80, rng), Step::Stall),
    ];
    steps.sort_by_key(|(index, _)| *index);
    steps
}

/// The report of a whole run.
#[derive(Debug, serde::Serialize)]
pub struct RunReport {
    /// The seed (replay with `--seed`).
    pub seed: u64,
    /// Requests planned.
    pub requests: usize,
    /// Per pattern.
    pub patterns: Vec<Report>,
    /// Faults injected, by class.
    pub faults: BTreeMap<String, u64>,
    /// Seconds from the first request to the last answer.
    pub send_seconds: f64,
    /// Seconds from the last answer until everything was terminal.
    pub drain_seconds: f64,
    /// Accepted requests per second while sending, over all patterns.
    pub accepted_per_second: f64,
    /// Accepted requests per second in the calm opening (before the first fault).
    pub calm_accepted_per_second: f64,
    /// CPU seconds used during the run, by component.
    pub cpu_seconds: BTreeMap<String, f64>,
    /// Seconds of the run (sending and draining).
    pub wall_seconds: f64,
    /// The most messages waiting on the buffer queues during the burst.
    pub burst_backlog: u64,
}

impl RunReport {
    /// Every pattern kept its promise, and every fault class was injected at least once.
    pub fn ok(&self) -> bool {
        self.patterns.iter().all(Report::ok) && self.missing_faults().is_empty()
    }

    /// Fault classes the run was meant to inject and did not.
    pub fn missing_faults(&self) -> Vec<&'static str> {
        FAULT_CLASSES
            .iter()
            .filter(|class| self.faults.get(**class).copied().unwrap_or(0) == 0)
            .copied()
            .collect()
    }
}

/// The fault classes a run with faults must show at least once each.
pub const FAULT_CLASSES: [&str; 9] = [
    "InternalServerError",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "delayed",
    "environment killed mid-invocation",
    "function timed out",
    "gateway restarted",
    "burst",
    "burst above consumer concurrency",
];

/// Runs everything; the report (printed by the caller).
pub async fn run(options: &Options) -> Result<RunReport> {
    let mut rng = fastrand::Rng::with_seed(options.seed);
    std::fs::create_dir_all(&options.out)?;
    let proxy = Arc::new(Proxy::start(&options.moto, rng.u64(..)).await?);
    let state_file = options.out.join("stack.json");
    let log = options.out.join("gateway.log");
    let _ = std::fs::remove_file(&log);
    let mut args: Vec<String> = [
        "--endpoint",
        &options.moto,
        "--function-endpoint",
        proxy.endpoint(),
        "--template",
        "template.yaml",
        "--port",
        "0",
        "--lambda-port",
        "0",
        "--stack-name",
        // The seed's draw keeps the rest of the plan as the seed makes it; the draw of no seed
        // makes the name the run's own, so that two runs with one seed in one moto (the test
        // runs the same seed with a broken consumer after the healthy one) never meet each
        // other's resources.
        &format!("chaos-{:x}", rng.u32(..) ^ fastrand::u32(..)),
        "--parameter-overrides",
        PARAMETERS,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push("--state-file".into());
    args.push(state_file.display().to_string());
    for pair in &options.function_binaries {
        args.push("--function-binary".into());
        args.push(pair.clone());
    }
    let launch = Launch {
        binary: options.gateway.clone(),
        args,
        dir: options.root.clone(),
        log: log.clone(),
        state_file,
    };
    eprintln!(
        "chaos: seed {} (replay: --seed {})",
        options.seed, options.seed
    );
    eprintln!("chaos: starting the stack (gateway log: {})", log.display());
    let gateway = tokio::task::spawn_blocking(move || Gateway::start(launch)).await??;
    let gateway = Arc::new(tokio::sync::Mutex::new(gateway));
    let sdk = aws_setup::load_with_endpoint(&options.moto, None).await;
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(1024)
        .build()?;
    let targets = Arc::new(std::sync::RwLock::new(targets_of(
        &gateway.lock().await.state,
        &options.patterns,
        &sdk,
        &http,
    )?));
    // The plan: requests split evenly over the patterns, interleaved in a seeded order.
    let per_pattern = options.requests / options.patterns.len().max(1);
    let mut workloads: Vec<Arc<dyn Workload>> = Vec::new();
    for key in &options.patterns {
        workloads.push(Arc::from(patterns::workload(
            key,
            rng.u64(..),
            per_pattern,
        )?));
    }
    let mut order: Vec<(usize, usize)> = workloads
        .iter()
        .enumerate()
        .flat_map(|(w, workload)| (0..workload.len()).map(move |i| (w, i)))
        .collect();
    interleave(&mut order, &mut rng);
    let burst = (order.len() / 10).clamp(50, 800);
    let steps = if options.faults {
        schedule(order.len(), burst, &mut rng)
    } else {
        Vec::new()
    };
    let usage = Usage::start(&options.moto, gateway.lock().await.pid());
    let faults = Arc::new(std::sync::Mutex::new(BTreeMap::<String, u64>::new()));

    let backlog = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut calm_rate = None;
    let mut step_iter = steps.into_iter().peekable();
    let mut position = 0;
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut limit = options.concurrency;
    let mut burst_left = 0usize;
    let mut reported = 0usize;
    use futures::StreamExt as _;
    while position < order.len() || !in_flight.is_empty() {
        // Steps due at this position.
        while let Some((at, _)) = step_iter.peek() {
            if *at > position {
                break;
            }
            let Some((_, step)) = step_iter.next() else {
                break;
            };
            if calm_rate.is_none() {
                calm_rate = Some(rate(&workloads, started));
            }
            match step {
                Step::Storm(weather) => {
                    eprintln!("chaos: {position}: a DynamoDB storm for {STORM:?}: {weather:?}");
                    proxy.set(weather);
                    let proxy = proxy.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(STORM).await;
                        proxy.set(Weather::default());
                    });
                }
                Step::Stall => {
                    eprintln!("chaos: {position}: DynamoDB stalls past the functions' timeouts");
                    let (watched, tally, seed) = (gateway.clone(), faults.clone(), rng.u64(..));
                    proxy.stall(STALL, STALL);
                    tokio::spawn(async move {
                        // Invocations started now wait on DynamoDB: killing environments now
                        // kills them mid-batch. Those started after the kill run past their
                        // timeouts. After the stall the retries find DynamoDB well again.
                        tokio::time::sleep(Duration::from_millis(1500)).await;
                        let mut rng = fastrand::Rng::with_seed(seed);
                        let killed = kill_environments(&watched, &mut rng).await;
                        eprintln!("chaos: killed {killed} execution environments during the stall");
                        count(&tally, "environments killed", killed as u64);
                    });
                }
                Step::KillEnvironments => {
                    let killed = kill_environments(&gateway, &mut rng).await;
                    eprintln!("chaos: {position}: killed {killed} execution environments");
                    count(&faults, "environments killed", killed as u64);
                }
                Step::RestartGateway => {
                    eprintln!("chaos: {position}: SIGKILL of the gateway, then a restart");
                    let restarted = gateway.clone();
                    tokio::task::spawn_blocking(move || restarted.blocking_lock().restart())
                        .await?
                        .context("restarting the gateway")?;
                    let g = gateway.lock().await;
                    usage.gateway_restarted(g.pid());
                    *targets.write().unwrap_or_else(|e| e.into_inner()) =
                        targets_of(&g.state, &options.patterns, &sdk, &http)?;
                    count(&faults, "gateway restarted", 1);
                }
                Step::Burst(n) => {
                    eprintln!("chaos: {position}: a burst of {n} requests at once");
                    burst_left = n;
                    limit = n.max(options.concurrency);
                    count(&faults, "burst", 1);
                    let limit_of_consumers = consumer_concurrency(&targets_now(&targets));
                    if n > limit_of_consumers {
                        count(&faults, "burst above consumer concurrency", 1);
                    }
                    let (watched, tally, seed) = (gateway.clone(), faults.clone(), rng.u64(..));
                    let backlog = backlog.clone();
                    let queues = buffer_queues(&targets_now(&targets));
                    let sqs = aws_sdk_sqs::Client::new(&sdk);
                    tokio::spawn(async move {
                        // While the burst is worked through: kill environments mid-batch, and
                        // watch the buffers' backlog.
                        let mut rng = fastrand::Rng::with_seed(seed);
                        for tick in 0..50u32 {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            if tick == 7 {
                                let killed = kill_environments(&watched, &mut rng).await;
                                eprintln!(
                                    "chaos: killed {killed} execution environments during the burst"
                                );
                                count(&tally, "environments killed", killed as u64);
                            }
                            let depth = visible(&sqs, &queues).await;
                            backlog.fetch_max(depth, Ordering::Relaxed);
                        }
                    });
                }
            }
        }
        while in_flight.len() < limit && position < order.len() {
            let (w, i) = order[position];
            position += 1;
            if burst_left > 0 {
                burst_left -= 1;
                if burst_left == 0 {
                    limit = options.concurrency;
                }
            }
            let workload = workloads[w].clone();
            let target = targets.read().unwrap_or_else(|e| e.into_inner())[w].clone();
            let sent = sent.clone();
            // Each request is its own task: it goes on while the loop waits on a step.
            in_flight.push(tokio::spawn(async move {
                workload.send(&target, i).await;
                sent.fetch_add(1, Ordering::Relaxed);
            }));
        }
        if in_flight.next().await.is_none() && position >= order.len() {
            break;
        }
        if position / 1000 > reported / 1000 {
            reported = position;
            eprintln!("chaos: {position} of {} sent", order.len());
        }
    }
    let send_seconds = started.elapsed().as_secs_f64();
    let accepted_rate = rate(&workloads, started);
    proxy.set(Weather::default());
    eprintln!(
        "chaos: all {} sent in {send_seconds:.1} s; draining",
        order.len()
    );
    let drain_started = Instant::now();
    let mut last_note = Instant::now();
    loop {
        let current = targets.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut waiting = Vec::new();
        for (workload, target) in workloads.iter().zip(&current) {
            match workload.pending(target).await {
                Ok(None) => {}
                Ok(Some(what)) => waiting.push(format!("{}: {what}", workload.name())),
                Err(error) => waiting.push(format!("{}: {error:#}", workload.name())),
            }
        }
        if waiting.is_empty() {
            break;
        }
        if drain_started.elapsed() > DRAIN {
            eprintln!(
                "chaos: still not drained after {DRAIN:?}: {}",
                waiting.join("; ")
            );
            break;
        }
        if last_note.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "chaos: draining ({:.0} s): {}",
                drain_started.elapsed().as_secs_f64(),
                waiting.join("; ")
            );
            last_note = Instant::now();
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let drain_seconds = drain_started.elapsed().as_secs_f64();
    let current = targets.read().unwrap_or_else(|e| e.into_inner()).clone();
    let mut reports = Vec::new();
    for (workload, target) in workloads.iter().zip(&current) {
        let mut report = workload
            .account(target)
            .await
            .with_context(|| format!("accounting for {}", workload.name()))?;
        for index in 0..workload.len() {
            *report.planned.entry(workload.kind(index)).or_default() += 1;
        }
        reports.push(report);
    }
    let mut injected = faults.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (class, n) in proxy.tally() {
        if class != "passed" {
            injected.insert(class, n);
        }
    }
    let gateway_log = std::fs::read_to_string(&log).unwrap_or_default();
    injected.insert(
        "environment killed mid-invocation".into(),
        gateway_log
            .matches("Runtime exited with error: signal: 9")
            .count() as u64,
    );
    injected.insert(
        "function timed out".into(),
        gateway_log.matches("Task timed out after").count() as u64,
    );
    let cpu_seconds = usage.finish(gateway.lock().await.pid());
    Ok(RunReport {
        seed: options.seed,
        requests: order.len(),
        patterns: reports,
        faults: injected,
        send_seconds,
        drain_seconds,
        accepted_per_second: accepted_rate,
        calm_accepted_per_second: calm_rate.unwrap_or(accepted_rate),
        cpu_seconds,
        wall_seconds: started.elapsed().as_secs_f64(),
        burst_backlog: backlog.load(Ordering::Relaxed),
    })
}

/// Adds `n` to the fault class `class`.
fn count(faults: &std::sync::Mutex<BTreeMap<String, u64>>, class: &str, n: u64) {
    *faults
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(class.to_owned())
        .or_default() += n;
}

/// Accepted requests per second since `started`, over all workloads (from their ledgers).
fn rate(workloads: &[Arc<dyn Workload>], started: Instant) -> f64 {
    let accepted: usize = workloads.iter().map(|w| w.accepted()).sum();
    accepted as f64 / started.elapsed().as_secs_f64().max(1e-3)
}

fn targets_now(targets: &std::sync::RwLock<Vec<Target>>) -> Vec<Target> {
    targets.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The highest concurrency a queue consumer may reach (`ConsumerMaximumConcurrency` of the
/// patterns that declare it); a burst of more requests at once is above every consumer's limit.
fn consumer_concurrency(targets: &[Target]) -> usize {
    targets
        .iter()
        .filter_map(|t| t.pattern["parameters"]["ConsumerMaximumConcurrency"].as_str())
        .filter_map(|v| v.parse().ok())
        .max()
        .unwrap_or(0)
}

/// The URLs of the patterns' buffer queues (queues that redrive to a dead-letter queue).
fn buffer_queues(targets: &[Target]) -> Vec<String> {
    targets
        .iter()
        .filter_map(|t| t.pattern["queues"].as_object())
        .flat_map(|queues| queues.values())
        .filter(|q| q["deadLetterTargetArn"].is_string())
        .filter_map(|q| q["url"].as_str().map(str::to_owned))
        .collect()
}

/// Messages visible on `queues` now, summed.
async fn visible(sqs: &aws_sdk_sqs::Client, queues: &[String]) -> u64 {
    let mut total = 0;
    for url in queues {
        let answer = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await;
        if let Ok(out) = answer {
            total += out
                .attributes()
                .and_then(|a| {
                    a.get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
                })
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// Shuffles `order` but keeps each workload's own requests in their planned order, so groups
/// planned together (the same key at once, a duplicate after its original) stay close.
fn interleave(order: &mut [(usize, usize)], rng: &mut fastrand::Rng) {
    let mut by_workload: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
    for item in order.iter() {
        by_workload.entry(item.0).or_default().push(*item);
    }
    let mut queues: Vec<std::collections::VecDeque<(usize, usize)>> =
        by_workload.into_values().map(Into::into).collect();
    let mut out = Vec::with_capacity(order.len());
    while queues.iter().any(|q| !q.is_empty()) {
        let open: Vec<usize> = (0..queues.len())
            .filter(|i| !queues[*i].is_empty())
            .collect();
        let pick = open[rng.usize(..open.len())];
        if let Some(item) = queues[pick].pop_front() {
            out.push(item);
        }
    }
    order.copy_from_slice(&out);
}

/// SIGKILLs a seeded half (at least one) of the gateway's execution environments; how many.
async fn kill_environments(
    gateway: &tokio::sync::Mutex<Gateway>,
    rng: &mut fastrand::Rng,
) -> usize {
    let environments = gateway.lock().await.environments();
    let mut killed = 0;
    for (pid, _) in &environments {
        if (rng.bool() || killed == 0) && crate::gateway::kill(*pid) {
            killed += 1;
        }
    }
    killed
}

/// The targets of the patterns `keys` from the gateway's state file, in that order.
fn targets_of(
    state: &Value,
    keys: &[String],
    sdk: &aws_setup::SdkConfig,
    http: &reqwest::Client,
) -> Result<Vec<Target>> {
    keys.iter()
        .map(|key| {
            let pattern = state["patterns"][key.as_str()].clone();
            if !pattern.is_object() {
                bail!("the stack has no pattern {key}");
            }
            Ok(Target {
                pattern,
                signing: state["signing"].clone(),
                region: state["region"].as_str().unwrap_or("us-east-1").to_owned(),
                sdk: sdk.clone(),
                http: http.clone(),
            })
        })
        .collect()
}

/// The report as text: one line per pattern, the faults, the load figures, then each problem.
pub fn render(report: &RunReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "chaos: seed {}, {} requests",
        report.seed, report.requests
    );
    for p in &report.patterns {
        let refused: u64 = p.refused.values().sum();
        let outcomes: Vec<String> = p.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let mut classes: BTreeMap<&str, usize> = BTreeMap::new();
        for problem in &p.problems {
            *classes.entry(problem.class()).or_default() += 1;
        }
        let verdict = if p.ok() {
            "ok".to_owned()
        } else {
            let listed: Vec<String> = classes.iter().map(|(k, v)| format!("{k} {v}")).collect();
            format!("FAILED: {}", listed.join(", "))
        };
        let _ = writeln!(
            out,
            "{:<15} sent {} accepted {} refused {} unanswered {} | {} | {verdict}",
            p.pattern,
            p.sent,
            p.accepted,
            refused,
            p.unanswered,
            outcomes.join(", ")
        );
    }
    let faults: Vec<String> = report
        .faults
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(out, "faults injected: {}", faults.join(", "));
    let missing = report.missing_faults();
    if !missing.is_empty() {
        let _ = writeln!(
            out,
            "FAILED: fault classes never injected: {}",
            missing.join(", ")
        );
    }
    let cpu: Vec<String> = report
        .cpu_seconds
        .iter()
        .map(|(k, v)| {
            format!(
                "{k} {v:.1} s ({:.0}% of one core)",
                100.0 * v / report.wall_seconds.max(1e-3)
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "load: {:.0} accepted/s (calm opening {:.0}/s), sent in {:.1} s, drained in {:.1} s, burst backlog {}; CPU: {}",
        report.accepted_per_second,
        report.calm_accepted_per_second,
        report.send_seconds,
        report.drain_seconds,
        report.burst_backlog,
        cpu.join(", ")
    );
    for p in &report.patterns {
        for problem in p.problems.iter().take(20) {
            let _ = writeln!(out, "  {}: {problem:?}", p.pattern);
        }
        if p.problems.len() > 20 {
            let _ = writeln!(
                out,
                "  {}: ... {} more problems in report.json",
                p.pattern,
                p.problems.len() - 20
            );
        }
    }
    let _ = writeln!(
        out,
        "{}",
        if report.ok() {
            "chaos: PASSED"
        } else {
            "chaos: FAILED"
        }
    );
    out
}
