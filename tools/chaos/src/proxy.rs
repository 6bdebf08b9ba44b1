//! The fault proxy the functions reach DynamoDB through (the gateway's `--function-endpoint`).
//!
//! Every request passes to moto unchanged unless the current [`Weather`] says otherwise: a
//! DynamoDB call (`X-Amz-Target: DynamoDB_20120810.*`) may get one of the errors DynamoDB
//! answers under trouble (HTTP 500 `InternalServerError`, `ThrottlingException`,
//! `ProvisionedThroughputExceededException`) instead of reaching moto, or reach it late. Other
//! services (Secrets Manager, EventBridge) pass untouched. The draws come from the run's seed;
//! which call meets which draw depends on the order calls arrive, so a replay with the same seed
//! injects the same mix, not fault for fault the same calls.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, Response, StatusCode};
use testkit::faults::{Fault, pass_through, reply};

/// What DynamoDB calls meet for now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Weather {
    /// Share of calls answered with an error instead (0 to 1), the three errors in turn.
    pub errors: f64,
    /// Share of calls delayed by `delay` before they go to moto (0 to 1).
    pub delayed: f64,
    /// The delay of a delayed call.
    pub delay: Duration,
}

/// What the proxy did, by class: `InternalServerError`, `ThrottlingException`,
/// `ProvisionedThroughputExceededException`, `delayed`, `passed`.
pub type Tally = BTreeMap<String, u64>;

#[derive(Debug)]
struct State {
    weather: Weather,
    /// Until then every DynamoDB call is delayed by `stall_delay`, whatever the weather.
    stalled_until: Option<std::time::Instant>,
    stall_delay: Duration,
    /// Calls failed so far (which error the next one gets).
    failures: u64,
    rng: fastrand::Rng,
    tally: Tally,
}

/// A running proxy; it stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    endpoint: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const DYNAMODB_TARGET: &str = "DynamoDB_20120810.";

impl Proxy {
    /// Starts a proxy in front of `upstream` (moto) on a free loopback port; draws from `seed`.
    pub async fn start(upstream: &str, seed: u64) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State {
            weather: Weather::default(),
            stalled_until: None,
            stall_delay: Duration::ZERO,
            failures: 0,
            rng: fastrand::Rng::with_seed(seed),
            tally: Tally::new(),
        }));
        // Many connections at once (every environment of every function), each kept alive.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        let upstream = upstream.trim_end_matches('/').to_owned();
        let shared = state.clone();
        let app = axum::Router::new().fallback(move |request: Request<Body>| {
            let (client, upstream, state) = (client.clone(), upstream.clone(), shared.clone());
            async move { forward(request, &client, &upstream, &state).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            endpoint,
            state,
            task,
        })
    }

    /// The URL the functions use instead of moto's.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sets what DynamoDB calls meet from now on.
    pub fn set(&self, weather: Weather) {
        lock(&self.state).weather = weather;
    }

    /// Delays every DynamoDB call by `delay` for the next `period`, then lets the weather
    /// decide again (a stall outlasts no weather change made meanwhile).
    pub fn stall(&self, period: Duration, delay: Duration) {
        let mut s = lock(&self.state);
        s.stalled_until = Some(std::time::Instant::now() + period);
        s.stall_delay = delay;
    }

    /// What the proxy did so far.
    pub fn tally(&self) -> Tally {
        lock(&self.state).tally.clone()
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one call meets.
enum Fate {
    Pass,
    Delay(Duration),
    Fail(Fault),
}

fn fate(state: &Mutex<State>, dynamodb: bool) -> Fate {
    let mut s = lock(state);
    let stalled = s
        .stalled_until
        .is_some_and(|until| std::time::Instant::now() < until);
    let fate = if !dynamodb {
        Fate::Pass
    } else if stalled {
        Fate::Delay(s.stall_delay)
    } else {
        let w = s.weather;
        if s.rng.f64() < w.errors {
            // The three errors in turn, so a storm of a few failed calls has each of them.
            s.failures += 1;
            Fate::Fail(match s.failures % 3 {
                1 => Fault::InternalServerError,
                2 => Fault::Throttling,
                _ => Fault::ProvisionedThroughputExceeded,
            })
        } else if s.rng.f64() < w.delayed {
            Fate::Delay(w.delay)
        } else {
            Fate::Pass
        }
    };
    let class = match &fate {
        Fate::Pass => "passed",
        Fate::Delay(_) => "delayed",
        Fate::Fail(Fault::InternalServerError) => "InternalServerError",
        Fate::Fail(Fault::Throttling) => "ThrottlingException",
        Fate::Fail(_) => "ProvisionedThroughputExceededException",
    };
    *s.tally.entry(class.to_owned()).or_default() += 1;
    fate
}

async fn forward(
    request: Request<Body>,
    client: &reqwest::Client,
    upstream: &str,
    state: &Mutex<State>,
) -> Response<Body> {
    let dynamodb = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with(DYNAMODB_TARGET));
    match fate(state, dynamodb) {
        Fate::Fail(fault) => {
            let (status, body) = fault.answer();
            return reply(status, "application/x-amz-json-1.0", Bytes::from(body));
        }
        Fate::Delay(delay) => tokio::time::sleep(delay).await,
        Fate::Pass => {}
    }
    match pass_through(request, client, upstream).await {
        Ok(response) => response,
        Err(error) => reply(
            StatusCode::BAD_GATEWAY,
            "text/plain",
            Bytes::from(format!("fault proxy: upstream failed: {error}")),
        ),
    }
}
