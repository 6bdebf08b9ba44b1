//! Creating the monitoring resources in moto: SNS topics and their subscriptions, CloudWatch
//! alarms (their definitions; the gateway evaluates them, `crate::cloudwatch::engine`) and
//! dashboards, so that the AWS CLI and SDKs pointed at moto list them as AWS would.

use anyhow::{Context as _, Result, anyhow};
use serde_json::Value;

use super::{Clients, fit};
use crate::cfn::{Physical, scalar_to_string};
use crate::cloudwatch::alarm::Definition;

/// A topic: `TopicName` or a generated name (at most 256 characters); `Ref` is its ARN. Its
/// `KmsMasterKeyId` is kept as an attribute of the topic (moto stores it; AWS encrypts with it).
pub(super) async fn create_topic(clients: &Clients, name: &str, props: &Value) -> Result<Physical> {
    let topic = props
        .get("TopicName")
        .map(scalar_to_string)
        .unwrap_or_else(|| fit(name, 256));
    let mut create = clients.sns.create_topic().name(&topic);
    for key in ["KmsMasterKeyId", "DisplayName", "FifoTopic"] {
        if let Some(value) = props.get(key) {
            create = create.attributes(key, scalar_to_string(value));
        }
    }
    let out = create
        .send()
        .await
        .map_err(|e| anyhow!("{}", aws_sdk_sns::error::DisplayErrorContext(&e)))
        .with_context(|| format!("cannot create topic {topic}"))?;
    let arn = out.topic_arn().unwrap_or_default().to_owned();
    Ok(Physical {
        attributes: [
            ("TopicArn".to_owned(), arn.clone()),
            ("TopicName".to_owned(), topic),
        ]
        .into_iter()
        .collect(),
        reference: arn,
    })
}

/// A subscription (e-mail ones stay pending confirmation, as on AWS); `Ref` is its ARN.
pub(super) async fn create_subscription(clients: &Clients, props: &Value) -> Result<Physical> {
    let text = |key: &str| props.get(key).map(scalar_to_string);
    let topic = text("TopicArn").ok_or_else(|| anyhow!("TopicArn is required"))?;
    let out = clients
        .sns
        .subscribe()
        .topic_arn(&topic)
        .protocol(text("Protocol").ok_or_else(|| anyhow!("Protocol is required"))?)
        .set_endpoint(text("Endpoint"))
        .send()
        .await
        .map_err(|e| anyhow!("{}", aws_sdk_sns::error::DisplayErrorContext(&e)))
        .with_context(|| format!("cannot subscribe to {topic}"))?;
    Ok(Physical {
        reference: out.subscription_arn().unwrap_or_default().to_owned(),
        attributes: Default::default(),
    })
}

/// An alarm's definition, created as `PutMetricAlarm` would (`Ref` is its name). Its state starts
/// as `INSUFFICIENT_DATA` and is the gateway's evaluator's to change. A metric-math alarm is
/// created only as a name: the evaluator does not compute metric math.
pub(super) async fn create_alarm(clients: &Clients, name: &str, props: &Value) -> Result<Physical> {
    let alarm_name = props
        .get("AlarmName")
        .map(scalar_to_string)
        .unwrap_or_else(|| fit(name, 255));
    let arn = |n: &str| {
        format!(
            "arn:aws:cloudwatch:{}:{}:alarm:{n}",
            clients
                .cloudwatch
                .config()
                .region()
                .map(|r| r.to_string())
                .unwrap_or_default(),
            crate::ACCOUNT_ID
        )
    };
    let Ok(def) = Definition::from_properties(&alarm_name, props) else {
        return Ok(Physical {
            attributes: [("Arn".to_owned(), arn(&alarm_name))].into_iter().collect(),
            reference: alarm_name,
        });
    };
    use aws_sdk_cloudwatch::types::{ComparisonOperator, Dimension, Statistic};
    let mut put = clients
        .cloudwatch
        .put_metric_alarm()
        .alarm_name(&def.name)
        .set_alarm_description(def.description.clone())
        .namespace(&def.metric.namespace)
        .metric_name(&def.metric.name)
        .set_dimensions(Some(
            def.metric
                .dimensions
                .iter()
                .map(|(k, v)| Dimension::builder().name(k).value(v).build())
                .collect(),
        ))
        .period(def.period_s as i32)
        .evaluation_periods(def.evaluation_periods as i32)
        .datapoints_to_alarm(def.datapoints_to_alarm as i32)
        .threshold(def.threshold)
        .comparison_operator(ComparisonOperator::from(
            scalar_to_string(&props["ComparisonOperator"]).as_str(),
        ))
        .treat_missing_data(def.missing.as_str())
        .actions_enabled(def.actions_enabled)
        .set_alarm_actions(Some(def.alarm_actions.clone()))
        .set_ok_actions(Some(def.ok_actions.clone()))
        .set_insufficient_data_actions(Some(def.insufficient_data_actions.clone()));
    put = if props.get("ExtendedStatistic").is_some() {
        put.extended_statistic(&def.statistic_name)
    } else {
        put.statistic(Statistic::from(def.statistic_name.as_str()))
    };
    if let Some(unit) = &def.unit {
        put = put.unit(aws_sdk_cloudwatch::types::StandardUnit::from(unit.as_str()));
    }
    put.send()
        .await
        .map_err(|e| anyhow!("{}", aws_sdk_cloudwatch::error::DisplayErrorContext(&e)))
        .with_context(|| format!("cannot create alarm {}", def.name))?;
    Ok(Physical {
        attributes: [("Arn".to_owned(), arn(&def.name))].into_iter().collect(),
        reference: def.name,
    })
}

/// A dashboard, with its body as the template resolves it; `Ref` is its name.
pub(super) async fn create_dashboard(
    clients: &Clients,
    name: &str,
    props: &Value,
) -> Result<Physical> {
    let dashboard = props
        .get("DashboardName")
        .map(scalar_to_string)
        .unwrap_or_else(|| fit(name, 255));
    let body = props
        .get("DashboardBody")
        .map(|b| match b {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .ok_or_else(|| anyhow!("DashboardBody is required"))?;
    serde_json::from_str::<Value>(&body)
        .with_context(|| format!("dashboard {dashboard}: DashboardBody is not JSON"))?;
    clients
        .cloudwatch
        .put_dashboard()
        .dashboard_name(&dashboard)
        .dashboard_body(body)
        .send()
        .await
        .map_err(|e| anyhow!("{}", aws_sdk_cloudwatch::error::DisplayErrorContext(&e)))
        .with_context(|| format!("cannot create dashboard {dashboard}"))?;
    Ok(Physical {
        reference: dashboard,
        attributes: Default::default(),
    })
}
