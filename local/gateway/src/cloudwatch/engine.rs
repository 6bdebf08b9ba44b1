//! The running alarms: every template alarm evaluated by its own definition against the
//! gateway's metrics, its state set in moto's CloudWatch (`describe-alarms` shows what AWS would
//! show), each change printed on the console and published to the alarm's SNS topics as
//! CloudWatch publishes it.
//!
//! Time is scaled as the asynchronous retries are: one CloudWatch minute lasts
//! [`Alarms::minute`] locally (`--metric-minute`, 1 s by default), so a `Period: 60` alarm looks
//! at one-second periods. Thresholds on ages and durations stay in real units: an
//! `IteratorAge` of 60,000 ms is a minute however periods are scaled.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::alarm::{Definition, State, Verdict, evaluate};
use super::store;
use crate::stack::Stack;

/// One alarm of the stack.
#[derive(Debug)]
pub struct Watched {
    /// Stack path and logical id (`Orders.DeadLetterAlarm`).
    pub id: String,
    /// Its definition.
    pub definition: Definition,
    state: Mutex<(State, String)>,
}

impl Watched {
    /// The current state and its reason.
    pub fn state(&self) -> (State, String) {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or((State::InsufficientData, String::new()))
    }
}

/// Every alarm the templates declare, and what evaluating them needs.
#[derive(Debug)]
pub struct Alarms {
    /// The alarms, in template order.
    pub alarms: Vec<Watched>,
    /// How long one CloudWatch minute lasts locally.
    pub minute: Duration,
    cloudwatch: aws_sdk_cloudwatch::Client,
    sns: aws_sdk_sns::Client,
    region: String,
}

/// The alarms of `stacks` (those whose `Condition` holds), read from their resolved properties.
/// An alarm the evaluator cannot read is reported and left out, never guessed at.
pub fn load(stacks: &[Stack]) -> Vec<Watched> {
    let mut out = Vec::new();
    for stack in stacks {
        for (logical, resource) in stack.template.resources_of("AWS::CloudWatch::Alarm") {
            let Some(physical) = stack.scope.resources.get(logical) else {
                continue; // its Condition is false
            };
            let id = if stack.path.is_empty() {
                logical.clone()
            } else {
                format!("{}.{logical}", stack.path)
            };
            let props = resource.get("Properties").cloned().unwrap_or(Value::Null);
            let definition = stack
                .scope
                .resolve(&props)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .and_then(|p| Definition::from_properties(&physical.reference, &p));
            match definition {
                Ok(definition) => out.push(Watched {
                    id,
                    definition,
                    state: Mutex::new((
                        State::InsufficientData,
                        "Unchecked: Initial alarm creation".into(),
                    )),
                }),
                Err(error) => {
                    tracing::warn!(alarm = %id, error = %format!("{error:#}"), "alarm not evaluated locally")
                }
            }
        }
    }
    out
}

fn millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

/// The datapoints of `def`'s last complete periods at `now`, oldest first, one CloudWatch
/// minute lasting `minute`.
pub fn datapoints(def: &Definition, now: SystemTime, minute: Duration) -> Vec<Option<f64>> {
    let period = minute
        .mul_f64(def.period_s as f64 / 60.0)
        .max(Duration::from_millis(1));
    let step = period.as_millis().max(1);
    let end_ms = millis(now) / step * step;
    let end = UNIX_EPOCH + Duration::from_millis(end_ms as u64);
    let store = store::global();
    (0..def.evaluation_periods)
        .rev()
        .map(|i| {
            let to = end - period * i as u32;
            let from = to - period;
            def.statistic.of(&store.values(&def.metric, from, to))
        })
        .collect()
}

impl Alarms {
    /// The alarms, evaluated against moto's CloudWatch and SNS through `clients`.
    pub fn new(
        alarms: Vec<Watched>,
        minute: Duration,
        clients: &crate::stack::Clients,
        region: &str,
    ) -> Self {
        Self {
            alarms,
            minute,
            cloudwatch: clients.cloudwatch.clone(),
            sns: clients.sns.clone(),
            region: region.to_owned(),
        }
    }

    /// Evaluates every alarm twice per local minute, for as long as the gateway runs.
    pub fn start(self: Arc<Self>) {
        if self.alarms.is_empty() {
            return;
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(self.minute / 2);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.evaluate_all(SystemTime::now()).await;
            }
        });
    }

    /// One evaluation of every alarm at `now`.
    pub async fn evaluate_all(&self, now: SystemTime) {
        for watched in &self.alarms {
            let def = &watched.definition;
            let (current, _) = watched.state();
            let verdict = evaluate(def, &datapoints(def, now, self.minute), current);
            if verdict.state == current {
                continue;
            }
            if let Ok(mut state) = watched.state.lock() {
                *state = (verdict.state, verdict.reason.clone());
            }
            self.changed(watched, current, &verdict).await;
        }
    }

    async fn changed(&self, watched: &Watched, old: State, verdict: &Verdict) {
        let def = &watched.definition;
        // Every alarm leaves INSUFFICIENT_DATA for OK soon after the start: worth a debug line,
        // not a console line per alarm. Every other change is printed.
        if old == State::InsufficientData && verdict.state == State::Ok {
            tracing::debug!(alarm = %watched.id, reason = %verdict.reason, "alarm is OK");
        } else {
            eprintln!(
                "[{}] alarm {} is {} (was {}): {}",
                watched.id,
                def.name,
                verdict.state.as_str(),
                old.as_str(),
                verdict.reason
            );
        }
        let reason_data = json!({
            "version": "1.0",
            "queryDate": iso(SystemTime::now()),
            "statistic": def.statistic_name,
            "period": def.period_s,
            "recentDatapoints": verdict.datapoints.iter().flatten().collect::<Vec<_>>(),
            "threshold": def.threshold,
            "evaluatedDatapoints": verdict.datapoints.len(),
        });
        let set = self
            .cloudwatch
            .set_alarm_state()
            .alarm_name(&def.name)
            .state_value(aws_sdk_cloudwatch::types::StateValue::from(
                verdict.state.as_str(),
            ))
            .state_reason(&verdict.reason)
            .state_reason_data(reason_data.to_string())
            .send()
            .await;
        if let Err(error) = set {
            tracing::warn!(alarm = %watched.id, error = %aws_sdk_cloudwatch::error::DisplayErrorContext(&error), "cannot set the alarm's state in the emulator");
        }
        if !def.actions_enabled {
            return;
        }
        let message = notification(def, old, verdict, &self.region);
        let subject = format!(
            "{}: \"{}\" in {}",
            verdict.state.as_str(),
            def.name,
            self.region
        );
        for action in def.actions_for(verdict.state) {
            if !action.starts_with("arn:aws:sns:") {
                tracing::info!(alarm = %watched.id, action = %action, "alarm action is not an SNS topic: not run locally");
                continue;
            }
            let published = self
                .sns
                .publish()
                .topic_arn(action)
                .subject(subject.chars().take(100).collect::<String>())
                .message(message.to_string())
                .send()
                .await;
            if let Err(error) = published {
                tracing::warn!(alarm = %watched.id, topic = %action, error = %aws_sdk_sns::error::DisplayErrorContext(&error), "cannot publish the alarm's notification");
            }
        }
    }
}

fn iso(t: SystemTime) -> String {
    aws_sdk_sqs::primitives::DateTime::from(t)
        .fmt(aws_sdk_sqs::primitives::DateTimeFormat::DateTime)
        .unwrap_or_default()
}

/// The message CloudWatch publishes to an alarm's topic (the JSON its e-mail and SQS/Lambda
/// subscribers receive: `AlarmName`, `NewStateValue`, `NewStateReason`, `OldStateValue`,
/// `Trigger` with the metric and the threshold). The shape follows a captured notification kept
/// as test data by AWS's Lambda library for Go (aws-lambda-go,
/// events/testdata/cloudwatch-alarm-sns-payload-single-metric.json). One difference is known:
/// AWS writes `Region` as the region's long name ("EU - Ireland"), the gateway its code.
pub fn notification(def: &Definition, old: State, verdict: &Verdict, region: &str) -> Value {
    json!({
        "AlarmName": def.name,
        "AlarmDescription": def.description,
        "AWSAccountId": crate::ACCOUNT_ID,
        "NewStateValue": verdict.state.as_str(),
        "NewStateReason": verdict.reason,
        "StateChangeTime": iso(SystemTime::now()),
        "Region": region,
        "AlarmArn": format!("arn:aws:cloudwatch:{region}:{}:alarm:{}", crate::ACCOUNT_ID, def.name),
        "OldStateValue": old.as_str(),
        "Trigger": {
            "MetricName": def.metric.name,
            "Namespace": def.metric.namespace,
            "StatisticType": if matches!(def.statistic, super::alarm::Statistic::Percentile(_)) { "ExtendedStatistic" } else { "Statistic" },
            "Statistic": def.statistic_name.to_ascii_uppercase(),
            "Unit": def.unit,
            "Dimensions": def.metric.dimensions.iter().map(|(k, v)| json!({"value": v, "name": k})).collect::<Vec<_>>(),
            "Period": def.period_s,
            "EvaluationPeriods": def.evaluation_periods,
            "DatapointsToAlarm": def.datapoints_to_alarm,
            "ComparisonOperator": format!("{:?}", def.comparison),
            "Threshold": def.threshold,
            "TreatMissingData": def.missing.as_str(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudwatch::store::MetricId;

    #[test]
    fn datapoints_fall_into_scaled_periods() {
        let id = MetricId::new("Test/Engine", "Depth", &[("QueueName", "periods")]);
        let def = Definition::from_properties(
            "a",
            &json!({"Namespace": "Test/Engine", "MetricName": "Depth",
                "Dimensions": [{"Name": "QueueName", "Value": "periods"}],
                "Statistic": "Maximum", "Period": 60, "EvaluationPeriods": 2,
                "Threshold": 0, "ComparisonOperator": "GreaterThanThreshold"}),
        )
        .expect("valid");
        // One CloudWatch minute lasts 10 s here: periods [0, 10) and [10, 20) before t = 20 s.
        let minute = Duration::from_secs(10);
        let base = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        store::global().put(id.clone(), base + Duration::from_secs(1), 4.0);
        store::global().put(id.clone(), base + Duration::from_secs(2), 7.0);
        store::global().put(id.clone(), base + Duration::from_secs(25), 9.0);
        let now = base + Duration::from_secs(20);
        assert_eq!(datapoints(&def, now, minute), vec![Some(7.0), None]);
        let later = base + Duration::from_secs(30);
        assert_eq!(datapoints(&def, later, minute), vec![None, Some(9.0)]);
    }
}
