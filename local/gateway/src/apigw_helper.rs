//! The mapping-template and validation helper (`apigw_helper.py`), run as a child process.
//!
//! REST API mapping templates are Velocity; the helper renders them with airspeed-ext (the engine
//! AWS emulators use) and validates request bodies with JSON Schema draft 4, as API Gateway does.
//! One helper serves the whole gateway; requests are serialised over its stdin/stdout.

use std::process::Stdio;

use anyhow::{Context as _, Result, anyhow};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Mutex;

const SCRIPT: &str = include_str!("../apigw_helper.py");

/// What rendering a template gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The output text.
    pub output: String,
    /// `$context.responseOverride.status`, if set.
    pub status: Option<u16>,
    /// `$context.responseOverride.header.*`.
    pub headers: Vec<(String, String)>,
}

struct Pipes {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    _child: Child,
}

/// A running helper.
pub struct Helper {
    pipes: Mutex<Pipes>,
}

impl std::fmt::Debug for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helper").finish_non_exhaustive()
    }
}

impl Helper {
    /// Starts the helper with `python` (which needs airspeed-ext and jsonschema).
    pub fn start(python: &str) -> Result<Self> {
        let mut child = tokio::process::Command::new(python)
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("cannot start the template helper with {python} (run `make venv`)")
            })?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| anyhow!("helper has no stdin"))?;
        let stdout = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| anyhow!("helper has no stdout"))?,
        );
        Ok(Self {
            pipes: Mutex::new(Pipes {
                stdin,
                stdout,
                _child: child,
            }),
        })
    }

    async fn call(&self, request: Value) -> Result<Value> {
        let mut pipes = self.pipes.lock().await;
        let mut line = serde_json::to_string(&request)?;
        line.push('\n');
        pipes
            .stdin
            .write_all(line.as_bytes())
            .await
            .context("template helper is gone")?;
        pipes.stdin.flush().await?;
        let mut answer = String::new();
        if pipes.stdout.read_line(&mut answer).await? == 0 {
            anyhow::bail!("template helper exited");
        }
        let answer: Value = serde_json::from_str(&answer)?;
        if let Some(error) = answer.get("error").and_then(Value::as_str) {
            anyhow::bail!("mapping template failed: {error}");
        }
        Ok(answer)
    }

    /// Renders `template` with `$input` over `body` and `params`, and `$context`.
    pub async fn render(
        &self,
        template: &str,
        body: &str,
        params: &Value,
        context: &Value,
    ) -> Result<Rendered> {
        let answer = self
            .call(json!({"op": "render", "template": template, "body": body, "params": params, "context": context}))
            .await?;
        Ok(Rendered {
            output: answer["output"].as_str().unwrap_or_default().to_owned(),
            status: answer["status"]
                .as_u64()
                .and_then(|s| u16::try_from(s).ok()),
            headers: answer["headers"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect(),
        })
    }

    /// Validates `body` against a draft-4 JSON `schema`; `Err` carries the first violation.
    pub async fn validate(&self, schema: &Value, body: &str) -> Result<Result<(), String>> {
        let answer = self
            .call(json!({"op": "validate", "schema": schema, "body": body}))
            .await?;
        Ok(if answer["valid"] == true {
            Ok(())
        } else {
            Err(answer["reason"].as_str().unwrap_or("invalid").to_owned())
        })
    }
}
