//! Lambda authorizers of both flavors: identity sources, the call, and one decision cache.
//!
//! As API Gateway does: a missing or empty identity source is 401 without calling the function
//! (http-api-lambda-authorizer.html, apigateway-lambda-authorizer-input.html); a decision is
//! cached per authorizer under the identity sources' values for the TTL (0 turns caching off,
//! 3600 s at most). The cache is keyed by the values exactly as the function received them
//! (repeated headers joined, see [`crate::apigw::request`]), so no request can plant a decision
//! under a credential the function never judged. It is bounded ([`CACHE_CAPACITY`] entries per
//! authorizer, the oldest dropped first) and expired entries are dropped as new ones arrive, so
//! unauthenticated garbage cannot grow it without limit.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use serde_json::Value;

use crate::apigw::error::ApiError;
use crate::apigw::request::Request;
use crate::functions::Function;

/// Most decisions one authorizer keeps.
pub const CACHE_CAPACITY: usize = 1024;

/// The longest TTL API Gateway accepts.
pub const MAX_TTL: Duration = Duration::from_secs(3600);

/// Where an identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A header (lower-case name).
    Header(String),
    /// A query-string parameter.
    Query(String),
}

impl IdentitySource {
    /// Reads an HTTP API source (`$request.header.Authorization`, `$request.querystring.token`).
    pub fn http(text: &str) -> Result<Self> {
        Self::read(text, "$request.header.", "$request.querystring.")
    }

    /// Reads a REST API source (`method.request.header.Authorization`, `method.request.querystring.t`).
    pub fn rest(text: &str) -> Result<Self> {
        Self::read(
            text,
            "method.request.header.",
            "method.request.querystring.",
        )
    }

    fn read(text: &str, header: &str, query: &str) -> Result<Self> {
        let text = text.trim();
        if let Some(name) = text.strip_prefix(header).filter(|n| !n.is_empty()) {
            Ok(Self::Header(name.to_ascii_lowercase()))
        } else if let Some(name) = text.strip_prefix(query).filter(|n| !n.is_empty()) {
            Ok(Self::Query(name.to_owned()))
        } else {
            bail!("identity source {text:?} is not served locally (headers and query strings only)")
        }
    }

    fn value(&self, request: &Request) -> Option<String> {
        match self {
            Self::Header(name) => request.header(name),
            Self::Query(name) => request.query_params().remove(name),
        }
    }
}

/// A TTL from a template (seconds, at most an hour).
pub fn ttl(seconds: Option<&str>, default: u64) -> Result<Duration> {
    let seconds: u64 = match seconds {
        None => default,
        Some(s) => s
            .trim()
            .parse()
            .map_err(|_| anyhow!("the authorizer result TTL {s:?} is not a number of seconds"))?,
    };
    let ttl = Duration::from_secs(seconds);
    if ttl > MAX_TTL {
        bail!("the authorizer result TTL must be at most 3600 seconds");
    }
    Ok(ttl)
}

/// Decisions by identity, expiring and bounded.
#[derive(Debug)]
pub struct DecisionCache<D> {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Entries<D>>,
}

#[derive(Debug)]
struct Entries<D> {
    by_key: HashMap<Vec<String>, (Instant, u64, D)>,
    /// Keys in insertion order (all entries share one TTL, so this is expiry order too), with
    /// the insertion's number: a key inserted again owns only its newest slot.
    order: VecDeque<(Instant, u64, Vec<String>)>,
    inserted: u64,
}

impl<D: Clone> DecisionCache<D> {
    /// A cache keeping decisions for `ttl`, at most `capacity` of them.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::new(Entries {
                by_key: HashMap::new(),
                order: VecDeque::new(),
                inserted: 0,
            }),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries<D>> {
        // A panic while holding the lock leaves no half-made entry: the data is still usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The decision for `key`, if one is cached and fresh.
    pub fn get(&self, key: &[String]) -> Option<D> {
        let now = Instant::now();
        let entries = self.entries();
        entries
            .by_key
            .get(key)
            .filter(|(at, _, _)| now.duration_since(*at) < self.ttl)
            .map(|(_, _, d)| d.clone())
    }

    /// Keeps `decision` for `key`, dropping expired entries and, when full, the oldest.
    pub fn insert(&self, key: Vec<String>, decision: D) {
        let now = Instant::now();
        let mut entries = self.entries();
        let Entries {
            by_key,
            order,
            inserted,
        } = &mut *entries;
        while let Some((at, _, _)) = order.front() {
            let expired = now.duration_since(*at) >= self.ttl;
            if !expired && by_key.len() < self.capacity && order.len() < 2 * self.capacity {
                break;
            }
            if let Some((_, number, old)) = order.pop_front()
                && by_key
                    .get(&old)
                    .is_some_and(|(_, current, _)| *current == number)
            {
                by_key.remove(&old);
            }
        }
        *inserted += 1;
        order.push_back((now, *inserted, key.clone()));
        by_key.insert(key, (now, *inserted, decision));
    }

    /// How many decisions are held.
    pub fn len(&self) -> usize {
        self.entries().by_key.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A Lambda authorizer whose decisions are `D` (HTTP: allowed or not; REST: the policy).
#[derive(Debug)]
pub struct Authorizer<D> {
    /// Its name or id, for logs.
    pub name: String,
    /// The function that decides.
    pub function: Arc<Function>,
    /// Where the identity comes from.
    pub sources: Vec<IdentitySource>,
    cache: Option<DecisionCache<D>>,
}

impl<D: Clone> Authorizer<D> {
    /// An authorizer caching for `ttl` (none when zero or when it has no identity source).
    pub fn new(
        name: String,
        function: Arc<Function>,
        sources: Vec<IdentitySource>,
        ttl: Duration,
    ) -> Self {
        let cache = (!ttl.is_zero() && !sources.is_empty())
            .then(|| DecisionCache::new(ttl, CACHE_CAPACITY));
        Self {
            name,
            function,
            sources,
            cache,
        }
    }

    /// The identity sources' values, or 401 when one is missing or empty.
    pub fn identity(&self, request: &Request) -> Result<Vec<String>, ApiError> {
        self.sources
            .iter()
            .map(|source| {
                source
                    .value(request)
                    .filter(|v| !v.trim().is_empty())
                    .ok_or(ApiError::Unauthorized)
            })
            .collect()
    }

    /// The decision for `request`: cached, or asked of the function with the event `event`
    /// builds from the identity, and read by `read` (`None`: not a decision, a 500).
    pub async fn decide(
        &self,
        request: &Request,
        event: impl FnOnce(&[String]) -> Value,
        read: impl FnOnce(&Value) -> Option<D>,
    ) -> Result<D, ApiError> {
        let identity = self.identity(request)?;
        if let Some(decision) = self.cache.as_ref().and_then(|c| c.get(&identity)) {
            return Ok(decision);
        }
        let answer = match self.function.invoke(event(&identity)).await {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(authorizer = %self.name, error = %error, request_id = %request.id, "authorizer failed");
                return Err(ApiError::AuthorizerFailure);
            }
        };
        let Some(decision) = read(&answer) else {
            tracing::warn!(authorizer = %self.name, request_id = %request.id, "authorizer answered something that is not a decision");
            return Err(ApiError::AuthorizerFailure);
        };
        if let Some(cache) = &self.cache {
            cache.insert(identity, decision.clone());
        }
        Ok(decision)
    }
}

/// The function an authorizer or integration URI (`.../functions/<arn>/invocations`) names.
pub fn function_of(uri: &str, functions: &[Arc<Function>]) -> Option<Arc<Function>> {
    functions
        .iter()
        .find(|f| !f.arn.is_empty() && uri.contains(&format!("/functions/{}/invocations", f.arn)))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_sources_of_both_flavors_are_read() {
        assert_eq!(
            IdentitySource::http("$request.header.Authorization").expect("source"),
            IdentitySource::Header("authorization".into())
        );
        assert_eq!(
            IdentitySource::rest("method.request.querystring.token").expect("source"),
            IdentitySource::Query("token".into())
        );
        assert!(IdentitySource::http("$context.identity.sourceIp").is_err());
        assert!(IdentitySource::rest("method.request.header.").is_err());
    }

    #[test]
    fn ttls_default_and_are_bounded_by_an_hour() {
        assert_eq!(ttl(None, 300).expect("ttl"), Duration::from_secs(300));
        assert_eq!(ttl(Some("0"), 300).expect("ttl"), Duration::ZERO);
        assert!(ttl(Some("3601"), 0).is_err());
        assert!(ttl(Some("soon"), 0).is_err());
    }

    #[test]
    fn the_cache_keeps_at_most_its_capacity_dropping_the_oldest() {
        let cache = DecisionCache::new(Duration::from_secs(60), 3);
        for i in 0..10 {
            cache.insert(vec![format!("k{i}")], i);
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&["k9".to_owned()]), Some(9));
        assert_eq!(cache.get(&["k0".to_owned()]), None);
    }

    #[test]
    fn expired_decisions_are_neither_served_nor_kept() {
        let cache = DecisionCache::new(Duration::from_millis(1), 100);
        cache.insert(vec!["old".to_owned()], true);
        // Waits for the 1 ms TTL to pass: a condition on the clock, not a speed assumption.
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(2) {
            std::thread::yield_now();
        }
        assert_eq!(cache.get(&["old".to_owned()]), None);
        cache.insert(vec!["new".to_owned()], true);
        assert_eq!(cache.len(), 1, "the expired entry is dropped on insert");
    }

    #[test]
    fn a_key_inserted_again_is_not_dropped_by_its_older_slot() {
        let cache = DecisionCache::new(Duration::from_secs(60), 2);
        cache.insert(vec!["a".to_owned()], 1);
        cache.insert(vec!["b".to_owned()], 2);
        cache.insert(vec!["a".to_owned()], 3);
        cache.insert(vec!["c".to_owned()], 4);
        assert_eq!(cache.get(&["a".to_owned()]), Some(3));
        assert_eq!(cache.get(&["c".to_owned()]), Some(4));
    }
}
