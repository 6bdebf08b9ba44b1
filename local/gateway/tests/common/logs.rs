//! What the gateway shipped to moto's CloudWatch Logs, read back as a user would read it with
//! `aws logs filter-log-events`: a pattern's log groups by logical id, and the lines of a group
//! that satisfy a condition (naming one `apiRequestId`, in the tests that follow one request).

use serde_json::Value;

use super::LocalStack;

/// Every string value of a member named `key`, at any depth of the JSON `line` (tracing's JSON
/// lines keep fields under `fields`, an access log line keeps its own shape); none when the line
/// is no JSON.
pub fn members(line: &str, key: &str) -> Vec<String> {
    fn walk(value: &Value, key: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == key
                        && let Some(s) = v.as_str()
                    {
                        out.push(s.to_owned());
                    }
                    walk(v, key, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, key, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(value) = serde_json::from_str::<Value>(line) {
        walk(&value, key, &mut out);
    }
    out
}

impl LocalStack {
    fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        aws_sdk_cloudwatchlogs::Client::new(&self.sdk)
    }

    /// The name of the pattern's log group `logical` (an `AWS::Logs::LogGroup`), which the
    /// gateway names as CloudFormation does, `<stack>-<logical>-<suffix>`, found in moto. It
    /// exists once the gateway provisioned it or shipped a line to it: waits [`super::SETTLE`]
    /// at most (a line is shipped within a second of being written; the bound is for a loaded
    /// machine).
    pub async fn log_group(&self, logical: &str) -> String {
        let stack = self.state["stackName"].as_str().expect("stackName");
        let mut prefix = format!("{stack}-{logical}");
        prefix.truncate(60);
        prefix.push('-');
        let logs = self.logs();
        testkit::eventually(
            &format!("the log group {prefix}*"),
            super::SETTLE,
            || async {
                let out = logs
                    .describe_log_groups()
                    .log_group_name_prefix(&prefix)
                    .send()
                    .await
                    .ok()?;
                out.log_groups()
                    .iter()
                    .filter_map(|g| g.log_group_name())
                    .find(|name| {
                        // The suffix is the gateway's: no further `-`.
                        name.strip_prefix(&prefix).is_some_and(|s| !s.contains('-'))
                    })
                    .map(str::to_owned)
            },
        )
        .await
    }

    /// Every message of `group`, from all its streams, all pages.
    pub async fn log_messages(&self, group: &str) -> Vec<String> {
        let logs = self.logs();
        let mut messages = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let Ok(out) = logs
                .filter_log_events()
                .log_group_name(group)
                .set_next_token(token.clone())
                .send()
                .await
            else {
                return messages; // not there yet
            };
            messages.extend(
                out.events()
                    .iter()
                    .filter_map(|e| e.message().map(str::to_owned)),
            );
            match out.next_token() {
                Some(next) if Some(next) != token.as_deref() => token = Some(next.to_owned()),
                _ => return messages,
            }
        }
    }

    /// Waits until the group `logical` holds a line with a member `key` equal to `value`, and
    /// gives every such line. The bound is [`super::SETTLE`] plus `waits` (what the template's
    /// retries make the line wait for, as [`super::settle_after`] says).
    pub async fn lines_with(
        &self,
        logical: &str,
        key: &str,
        value: &str,
        waits: std::time::Duration,
    ) -> Vec<String> {
        let group = self.log_group(logical).await;
        testkit::eventually(
            &format!("a line of {logical} with {key} = {value}"),
            super::settle_after(waits),
            || async {
                let found: Vec<String> = self
                    .log_messages(&group)
                    .await
                    .into_iter()
                    .filter(|line| members(line, key).iter().any(|v| v == value))
                    .collect();
                (!found.is_empty()).then_some(found)
            },
        )
        .await
    }
}
