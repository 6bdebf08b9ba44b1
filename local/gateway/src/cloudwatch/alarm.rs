//! A template's `AWS::CloudWatch::Alarm` read into what evaluating it needs, and the
//! evaluation itself: pure functions of the datapoints, unit-tested apart from any clock.
//!
//! The rules are CloudWatch's (CloudWatch user guide, "Using Amazon CloudWatch alarms":
//! "Evaluating an alarm" and "Configuring how CloudWatch alarms treat missing data"):
//! - each period's datapoint is the alarm's statistic over the values recorded in it;
//! - the alarm looks at its last `EvaluationPeriods` periods and goes to `ALARM` when at least
//!   `DatapointsToAlarm` (default: `EvaluationPeriods`) of them breach the threshold;
//! - a period without data counts per `TreatMissingData`: `breaching` as breaching,
//!   `notBreaching` as within the threshold, `ignore` keeps the current state when nothing else
//!   decides, `missing` (the default) leaves it out, and a range with no data at all is
//!   `INSUFFICIENT_DATA`.
//!
//! CloudWatch may look further back than `EvaluationPeriods` to find datapoints when some are
//! missing ("evaluation range"); the local evaluator looks at exactly `EvaluationPeriods`, which
//! gives the same state for every alarm the patterns declare (one period, or counts with
//! `notBreaching`). Metric-math alarms (`Metrics`) are not evaluated locally.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use serde_json::Value;

use crate::cfn::scalar_to_string;

use super::store::MetricId;

/// An alarm state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// `OK`.
    Ok,
    /// `ALARM`.
    Alarm,
    /// `INSUFFICIENT_DATA`: every alarm's state when created.
    InsufficientData,
}

impl State {
    /// CloudWatch's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "OK",
            State::Alarm => "ALARM",
            State::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

/// A statistic of a period's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Statistic {
    /// `SampleCount`.
    SampleCount,
    /// `Sum`.
    Sum,
    /// `Average`.
    Average,
    /// `Minimum`.
    Minimum,
    /// `Maximum`.
    Maximum,
    /// `ExtendedStatistic: pNN` (nearest rank).
    Percentile(f64),
}

impl Statistic {
    /// Reads `Statistic` or `ExtendedStatistic` (`p99`, `p99.9`).
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "SampleCount" => Statistic::SampleCount,
            "Sum" => Statistic::Sum,
            "Average" => Statistic::Average,
            "Minimum" => Statistic::Minimum,
            "Maximum" => Statistic::Maximum,
            other => match other.strip_prefix('p').and_then(|p| p.parse::<f64>().ok()) {
                Some(p) if (0.0..=100.0).contains(&p) => Statistic::Percentile(p),
                _ => bail!("statistic {other:?} is not one the local evaluator knows"),
            },
        })
    }

    /// The statistic of `values`; `None` when there are none (a missing datapoint).
    pub fn of(self, values: &[f64]) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        let n = values.len() as f64;
        Some(match self {
            Statistic::SampleCount => n,
            Statistic::Sum => values.iter().sum(),
            Statistic::Average => values.iter().sum::<f64>() / n,
            Statistic::Minimum => values.iter().copied().fold(f64::INFINITY, f64::min),
            Statistic::Maximum => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Statistic::Percentile(p) => {
                let mut sorted = values.to_vec();
                sorted.sort_by(f64::total_cmp);
                // Nearest rank: the smallest value with at least p% of the values at or below it.
                let rank = ((p / 100.0) * n).ceil().max(1.0) as usize;
                sorted[rank.min(sorted.len()) - 1]
            }
        })
    }
}

/// `ComparisonOperator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `GreaterThanThreshold`.
    Greater,
    /// `GreaterThanOrEqualToThreshold`.
    GreaterOrEqual,
    /// `LessThanThreshold`.
    Less,
    /// `LessThanOrEqualToThreshold`.
    LessOrEqual,
}

impl Comparison {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "GreaterThanThreshold" => Comparison::Greater,
            "GreaterThanOrEqualToThreshold" => Comparison::GreaterOrEqual,
            "LessThanThreshold" => Comparison::Less,
            "LessThanOrEqualToThreshold" => Comparison::LessOrEqual,
            other => bail!("comparison {other:?} is not one the local evaluator knows"),
        })
    }

    /// Whether `value` breaches `threshold`.
    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::Greater => value > threshold,
            Comparison::GreaterOrEqual => value >= threshold,
            Comparison::Less => value < threshold,
            Comparison::LessOrEqual => value <= threshold,
        }
    }

    /// How CloudWatch words the comparison in a state reason.
    pub fn words(self) -> &'static str {
        match self {
            Comparison::Greater => "greater than",
            Comparison::GreaterOrEqual => "greater than or equal to",
            Comparison::Less => "less than",
            Comparison::LessOrEqual => "less than or equal to",
        }
    }
}

/// `TreatMissingData`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// `missing` (the default).
    Missing,
    /// `breaching`.
    Breaching,
    /// `notBreaching`.
    NotBreaching,
    /// `ignore`.
    Ignore,
}

impl Missing {
    fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "missing" => Missing::Missing,
            "breaching" => Missing::Breaching,
            "notBreaching" => Missing::NotBreaching,
            "ignore" => Missing::Ignore,
            other => bail!("TreatMissingData {other:?} is not one of CloudWatch's"),
        })
    }

    /// CloudWatch's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::Missing => "missing",
            Missing::Breaching => "breaching",
            Missing::NotBreaching => "notBreaching",
            Missing::Ignore => "ignore",
        }
    }
}

/// What an alarm is.
#[derive(Debug, Clone)]
pub struct Definition {
    /// `AlarmName` (or the generated physical name).
    pub name: String,
    /// `AlarmDescription`.
    pub description: Option<String>,
    /// The metric.
    pub metric: MetricId,
    /// `Statistic` or `ExtendedStatistic`.
    pub statistic: Statistic,
    /// The name the template gave the statistic (`Maximum`, `p99`).
    pub statistic_name: String,
    /// `Period`, in seconds.
    pub period_s: u64,
    /// `EvaluationPeriods`.
    pub evaluation_periods: usize,
    /// `DatapointsToAlarm`.
    pub datapoints_to_alarm: usize,
    /// `Threshold`.
    pub threshold: f64,
    /// `ComparisonOperator`.
    pub comparison: Comparison,
    /// `TreatMissingData`.
    pub missing: Missing,
    /// `ActionsEnabled` (default true).
    pub actions_enabled: bool,
    /// `AlarmActions`.
    pub alarm_actions: Vec<String>,
    /// `OKActions`.
    pub ok_actions: Vec<String>,
    /// `InsufficientDataActions`.
    pub insufficient_data_actions: Vec<String>,
    /// `Unit`.
    pub unit: Option<String>,
}

fn strings(props: &Value, key: &str) -> Vec<String> {
    props
        .get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(scalar_to_string).collect())
        .unwrap_or_default()
}

fn number(props: &Value, key: &str) -> Result<Option<f64>> {
    match props.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => scalar_to_string(v)
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| anyhow!("{key} must be a number, got {v}")),
    }
}

impl Definition {
    /// Reads an alarm's resolved `Properties`; `name` is its physical name when `AlarmName` is
    /// not set. A metric-math alarm is refused (the caller reports it as not evaluated).
    pub fn from_properties(name: &str, props: &Value) -> Result<Self> {
        if props.get("Metrics").is_some() {
            bail!("metric-math alarms (Metrics) are not evaluated locally");
        }
        let text = |key: &str| props.get(key).map(scalar_to_string);
        let required = |key: &str| text(key).ok_or_else(|| anyhow!("{key} is required"));
        let statistic_name = text("Statistic")
            .or_else(|| text("ExtendedStatistic"))
            .ok_or_else(|| anyhow!("Statistic or ExtendedStatistic is required"))?;
        let dimensions: BTreeMap<String, String> = props
            .get("Dimensions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| {
                Some((
                    scalar_to_string(d.get("Name")?),
                    scalar_to_string(d.get("Value")?),
                ))
            })
            .collect();
        let period = number(props, "Period")?.ok_or_else(|| anyhow!("Period is required"))?;
        if !(period >= 1.0 && period.fract() == 0.0) {
            bail!("Period must be a whole number of seconds, got {period}");
        }
        let evaluation_periods = number(props, "EvaluationPeriods")?
            .ok_or_else(|| anyhow!("EvaluationPeriods is required"))?;
        if !(1.0..=1000.0).contains(&evaluation_periods) {
            bail!("EvaluationPeriods must be between 1 and 1000");
        }
        let evaluation_periods = evaluation_periods as usize;
        let datapoints_to_alarm = number(props, "DatapointsToAlarm")?
            .map(|d| d as usize)
            .unwrap_or(evaluation_periods);
        if datapoints_to_alarm == 0 || datapoints_to_alarm > evaluation_periods {
            bail!("DatapointsToAlarm must be between 1 and EvaluationPeriods");
        }
        Ok(Definition {
            name: text("AlarmName").unwrap_or_else(|| name.to_owned()),
            description: text("AlarmDescription"),
            metric: MetricId {
                namespace: required("Namespace")?,
                name: required("MetricName")?,
                dimensions,
            },
            statistic: Statistic::parse(&statistic_name)?,
            statistic_name,
            period_s: period as u64,
            evaluation_periods,
            datapoints_to_alarm,
            threshold: number(props, "Threshold")?
                .ok_or_else(|| anyhow!("Threshold is required"))?,
            comparison: Comparison::parse(&required("ComparisonOperator")?)?,
            missing: Missing::parse(&text("TreatMissingData").unwrap_or_else(|| "missing".into()))?,
            actions_enabled: text("ActionsEnabled").as_deref() != Some("false"),
            alarm_actions: strings(props, "AlarmActions"),
            ok_actions: strings(props, "OKActions"),
            insufficient_data_actions: strings(props, "InsufficientDataActions"),
            unit: text("Unit"),
        })
    }

    /// The actions of a transition into `state`.
    pub fn actions_for(&self, state: State) -> &[String] {
        match state {
            State::Alarm => &self.alarm_actions,
            State::Ok => &self.ok_actions,
            State::InsufficientData => &self.insufficient_data_actions,
        }
    }
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The state the alarm should be in.
    pub state: State,
    /// CloudWatch-style reason (`Threshold Crossed: 1 datapoint [3.0 (...)] was greater than
    /// the threshold (0.0).`).
    pub reason: String,
    /// The datapoints looked at, newest first (`None`: missing).
    pub datapoints: Vec<Option<f64>>,
}

/// Evaluates `def` on its last periods' datapoints, oldest first (`datapoints.len()` is
/// `EvaluationPeriods`), from `current`.
pub fn evaluate(def: &Definition, datapoints: &[Option<f64>], current: State) -> Verdict {
    let breaching = |v: &Option<f64>| match v {
        Some(x) => Some(def.comparison.breaches(*x, def.threshold)),
        None => match def.missing {
            Missing::Breaching => Some(true),
            Missing::NotBreaching => Some(false),
            Missing::Missing | Missing::Ignore => None,
        },
    };
    let judged: Vec<Option<bool>> = datapoints.iter().map(breaching).collect();
    let breaches = judged.iter().filter(|b| **b == Some(true)).count();
    let present: Vec<f64> = datapoints.iter().rev().filter_map(|v| *v).collect();
    let shown = present
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let newest_first = datapoints.iter().rev().copied().collect();
    let (state, reason) = if breaches >= def.datapoints_to_alarm {
        (
            State::Alarm,
            format!(
                "Threshold Crossed: {breaches} out of the last {} datapoints [{shown}] {} {} the threshold ({:?}) (minimum {} datapoint{} for OK -> ALARM transition).",
                def.evaluation_periods,
                if breaches == 1 { "was" } else { "were" },
                def.comparison.words(),
                def.threshold,
                def.datapoints_to_alarm,
                if def.datapoints_to_alarm == 1 {
                    ""
                } else {
                    "s"
                },
            ),
        )
    } else if judged.iter().all(Option::is_none) {
        match def.missing {
            Missing::Ignore => (
                current,
                "No datapoints: the current state is kept (TreatMissingData: ignore).".to_owned(),
            ),
            _ => (
                State::InsufficientData,
                format!(
                    "Insufficient Data: {} datapoint{} unknown.",
                    def.evaluation_periods,
                    if def.evaluation_periods == 1 {
                        " was"
                    } else {
                        "s were"
                    }
                ),
            ),
        }
    } else if present.is_empty() {
        (
            State::Ok,
            format!(
                "Threshold Crossed: no datapoints were received for {n} period{s} and {n} missing datapoint{s} {was} treated as [NonBreaching].",
                n = def.evaluation_periods,
                s = if def.evaluation_periods == 1 { "" } else { "s" },
                was = if def.evaluation_periods == 1 {
                    "was"
                } else {
                    "were"
                },
            ),
        )
    } else {
        (
            State::Ok,
            format!(
                "Threshold Crossed: {} datapoint{} [{shown}] {} not {} the threshold ({:?}).",
                present.len(),
                if present.len() == 1 { "" } else { "s" },
                if present.len() == 1 { "was" } else { "were" },
                def.comparison.words(),
                def.threshold,
            ),
        )
    };
    Verdict {
        state,
        reason,
        datapoints: newest_first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alarm(extra: Value) -> Definition {
        let mut props = json!({
            "Namespace": "AWS/SQS", "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": "dlq"}],
            "Statistic": "Maximum", "Period": 60, "EvaluationPeriods": 1,
            "Threshold": 0, "ComparisonOperator": "GreaterThanThreshold",
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            props[k] = v.clone();
        }
        Definition::from_properties("generated", &props).expect("a valid alarm")
    }

    #[test]
    fn a_dead_letter_message_raises_the_alarm_and_an_empty_queue_clears_it() {
        let def = alarm(json!({}));
        assert_eq!(def.metric.dimensions["QueueName"], "dlq");
        let raised = evaluate(&def, &[Some(2.0)], State::Ok);
        assert_eq!(raised.state, State::Alarm);
        assert!(raised.reason.contains("[2.0]"), "{}", raised.reason);
        assert_eq!(evaluate(&def, &[Some(0.0)], State::Alarm).state, State::Ok);
    }

    #[test]
    fn missing_data_is_treated_as_the_alarm_says() {
        let by = |how: &str, current| {
            evaluate(&alarm(json!({"TreatMissingData": how})), &[None], current).state
        };
        assert_eq!(by("missing", State::Alarm), State::InsufficientData);
        assert_eq!(by("breaching", State::Ok), State::Alarm);
        assert_eq!(by("notBreaching", State::Alarm), State::Ok);
        assert_eq!(by("ignore", State::Alarm), State::Alarm);
        assert_eq!(by("ignore", State::Ok), State::Ok);
    }

    #[test]
    fn m_out_of_n_needs_m_breaching_periods() {
        let def = alarm(json!({"EvaluationPeriods": 3, "DatapointsToAlarm": 2}));
        assert_eq!(
            evaluate(&def, &[Some(1.0), Some(0.0), None], State::Ok).state,
            State::Ok
        );
        assert_eq!(
            evaluate(&def, &[Some(1.0), None, Some(3.0)], State::Ok).state,
            State::Alarm
        );
    }

    #[test]
    fn statistics_and_comparisons() {
        let values = [3.0, 1.0, 2.0, 10.0];
        assert_eq!(Statistic::Sum.of(&values), Some(16.0));
        assert_eq!(Statistic::Average.of(&values), Some(4.0));
        assert_eq!(Statistic::Minimum.of(&values), Some(1.0));
        assert_eq!(Statistic::Maximum.of(&values), Some(10.0));
        assert_eq!(Statistic::SampleCount.of(&values), Some(4.0));
        assert_eq!(
            Statistic::parse("p50").ok().and_then(|s| s.of(&values)),
            Some(2.0)
        );
        assert_eq!(
            Statistic::parse("p99").ok().and_then(|s| s.of(&values)),
            Some(10.0)
        );
        assert_eq!(Statistic::Sum.of(&[]), None);
        assert!(Statistic::parse("p101").is_err());
        assert!(Comparison::GreaterOrEqual.breaches(1.0, 1.0));
        assert!(!Comparison::Greater.breaches(1.0, 1.0));
        assert!(Comparison::LessOrEqual.breaches(1.0, 1.0));
    }

    #[test]
    fn bad_definitions_are_refused_with_the_property_named() {
        let refused = |extra: Value| {
            let mut props = json!({"Namespace": "N", "MetricName": "M", "Statistic": "Sum", "Period": 60,
                "EvaluationPeriods": 1, "Threshold": 0, "ComparisonOperator": "GreaterThanThreshold"});
            for (k, v) in extra.as_object().into_iter().flatten() {
                props[k] = v.clone();
            }
            Definition::from_properties("a", &props)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(refused(json!({"Period": "x"})).contains("Period"));
        assert!(refused(json!({"DatapointsToAlarm": 2})).contains("DatapointsToAlarm"));
        assert!(refused(json!({"ComparisonOperator": "Bigger"})).contains("Bigger"));
        assert!(refused(json!({"TreatMissingData": "maybe"})).contains("maybe"));
        assert!(refused(json!({"Metrics": []})).contains("metric-math"));
        assert!(refused(json!({})).is_empty());
    }
}
