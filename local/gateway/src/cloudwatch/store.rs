//! The metrics the gateway knows, kept in memory for its alarms and `make status`.
//!
//! One process-wide store: the parts that see a metric happen (function invocations, the
//! asynchronous event queue, the pollers, the APIs, the functions' EMF lines, the queue sampler)
//! [`record`] datapoints by CloudWatch's identity of a metric: namespace, name and the full set of
//! dimensions (an alarm on `FunctionName` alone matches only datapoints published with exactly
//! that dimension, as on CloudWatch). The store keeps what the alarms can still look at
//! ([`RETENTION`]) and at most [`MAX_POINTS`] datapoints per metric, so memory stays bounded
//! whatever the load.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

/// How long datapoints are kept (real time): more than any local evaluation range.
pub const RETENTION: Duration = Duration::from_secs(3600);
/// Most datapoints kept per metric (the oldest go first).
pub const MAX_POINTS: usize = 100_000;

/// CloudWatch's identity of a metric.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricId {
    /// `AWS/Lambda`, `AWS/SQS`, `AsyncApiPatterns`, ...
    pub namespace: String,
    /// `Errors`, `ApproximateNumberOfMessagesVisible`, ...
    pub name: String,
    /// Every dimension, by name.
    pub dimensions: BTreeMap<String, String>,
}

impl MetricId {
    /// The metric `namespace`/`name` with `dimensions`.
    pub fn new(namespace: &str, name: &str, dimensions: &[(&str, &str)]) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            dimensions: dimensions
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }
}

#[derive(Debug, Default)]
struct Series {
    points: VecDeque<(SystemTime, f64)>,
    total: f64,
    count: u64,
}

/// The datapoints of every metric seen.
#[derive(Debug, Default)]
pub struct Store {
    series: Mutex<HashMap<MetricId, Series>>,
}

static STORE: LazyLock<Store> = LazyLock::new(Store::default);

/// The process's store.
pub fn global() -> &'static Store {
    &STORE
}

/// Records one datapoint of `id` now, in the process's store.
pub fn record(id: MetricId, value: f64) {
    STORE.put(id, SystemTime::now(), value);
}

/// Records `value` of `namespace`/`name` with `dimensions` now.
pub fn record_metric(namespace: &str, name: &str, dimensions: &[(&str, &str)], value: f64) {
    record(MetricId::new(namespace, name, dimensions), value);
}

impl Store {
    /// Adds a datapoint of `id` at `at`; drops what is older than [`RETENTION`].
    pub fn put(&self, id: MetricId, at: SystemTime, value: f64) {
        if !value.is_finite() {
            return;
        }
        let Ok(mut series) = self.series.lock() else {
            return;
        };
        let entry = series.entry(id).or_default();
        // Kept in time order, so a period's values are found by binary search: a datapoint
        // stamped just before another thread's that took the lock first goes in its place.
        if entry.points.back().is_some_and(|(t, _)| *t > at) {
            let index = entry.points.partition_point(|(t, _)| *t <= at);
            entry.points.insert(index, (at, value));
        } else {
            entry.points.push_back((at, value));
        }
        entry.total += value;
        entry.count += 1;
        let horizon = at.checked_sub(RETENTION).unwrap_or(SystemTime::UNIX_EPOCH);
        while entry.points.len() > MAX_POINTS
            || entry.points.front().is_some_and(|(t, _)| *t < horizon)
        {
            entry.points.pop_front();
        }
    }

    /// The values of `id` recorded in `[from, to)`.
    pub fn values(&self, id: &MetricId, from: SystemTime, to: SystemTime) -> Vec<f64> {
        let Ok(series) = self.series.lock() else {
            return Vec::new();
        };
        series
            .get(id)
            .map(|s| {
                let start = s.points.partition_point(|(t, _)| *t < from);
                let end = s.points.partition_point(|(t, _)| *t < to);
                s.points
                    .range(start..end.max(start))
                    .map(|(_, v)| *v)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The sum and number of every datapoint of `id` since the gateway started.
    pub fn totals(&self, id: &MetricId) -> (f64, u64) {
        self.series
            .lock()
            .ok()
            .and_then(|s| s.get(id).map(|s| (s.total, s.count)))
            .unwrap_or((0.0, 0))
    }

    /// The latest value of `id`, if any is kept.
    pub fn latest(&self, id: &MetricId) -> Option<f64> {
        let series = self.series.lock().ok()?;
        series.get(id)?.points.back().map(|(_, v)| *v)
    }

    /// Every value of `id` kept (the last [`RETENTION`]).
    pub fn kept(&self, id: &MetricId) -> Vec<f64> {
        self.series
            .lock()
            .ok()
            .and_then(|s| {
                s.get(id)
                    .map(|s| s.points.iter().map(|(_, v)| *v).collect())
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_is_matched_by_its_whole_dimension_set() {
        let store = Store::default();
        let now = SystemTime::now();
        let one = MetricId::new("AWS/Lambda", "Errors", &[("FunctionName", "f")]);
        let none = MetricId::new("AWS/Lambda", "Errors", &[]);
        store.put(one.clone(), now, 1.0);
        store.put(none.clone(), now, 5.0);
        let until = now + Duration::from_secs(1);
        assert_eq!(store.values(&one, now, until), vec![1.0]);
        assert_eq!(store.values(&none, now, until), vec![5.0]);
        assert_eq!(store.totals(&one), (1.0, 1));
    }

    #[test]
    fn a_late_datapoint_takes_its_place_in_time() {
        let store = Store::default();
        let id = MetricId::new("N", "Late", &[]);
        let t = SystemTime::now();
        store.put(id.clone(), t + Duration::from_millis(20), 2.0);
        store.put(id.clone(), t, 1.0);
        store.put(id.clone(), t + Duration::from_millis(40), 3.0);
        assert_eq!(store.kept(&id), vec![1.0, 2.0, 3.0]);
        let window = store.values(&id, t, t + Duration::from_millis(30));
        assert_eq!(window, vec![1.0, 2.0]);
    }

    #[test]
    fn old_points_are_dropped_and_non_finite_values_refused() {
        let store = Store::default();
        let id = MetricId::new("N", "M", &[]);
        let then = SystemTime::now();
        store.put(id.clone(), then, 1.0);
        store.put(id.clone(), then, f64::NAN);
        store.put(id.clone(), then + RETENTION + Duration::from_secs(1), 2.0);
        assert_eq!(store.kept(&id), vec![2.0]);
        // Totals count every finite datapoint ever recorded.
        assert_eq!(store.totals(&id), (3.0, 2));
    }
}
