//! Building each function's binary natively, as `sam build` finds it: the crate in the
//! function's `CodeUri` and the binary named in `Metadata.BuildProperties.Binary` (SAM's
//! `rust-cargolambda` build method). Each function is built on its own, in its own crate's
//! directory, so its dependencies get the features that crate asks for, as in `sam build`.
//!
//! A function whose `CodeUri` holds no `Cargo.toml` but an executable named by its `Handler`
//! (`bootstrap`, say: a `sam build` output or a binary of any language) runs as it is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use serde_json::Value;

use crate::cfn::scalar_to_string;
use crate::stack::Stack;

/// The id the gateway knows a function by: its logical id, qualified by its stack's path.
pub fn function_id(stack: &Stack, logical: &str) -> String {
    if stack.path.is_empty() {
        logical.to_owned()
    } else {
        format!("{}.{logical}", stack.path)
    }
}

/// What to build for one function.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// `cargo build --bin <binary>` in the crate at `dir`.
    Cargo {
        /// The crate's folder (the function's `CodeUri`).
        dir: PathBuf,
        /// The binary target.
        binary: String,
    },
    /// An executable that is already there.
    Executable(PathBuf),
}

/// Where the code of a function of `stack` comes from.
pub fn source(stack: &Stack, logical: &str, resource: &Value) -> Result<Source> {
    let id = function_id(stack, logical);
    let properties = stack
        .scope
        .resolve(resource.get("Properties").unwrap_or(&Value::Null))
        .map_err(|e| anyhow!("{id}: {e}"))?;
    let code_uri = properties
        .get("CodeUri")
        .map(scalar_to_string)
        .ok_or_else(|| anyhow!("{id}: CodeUri is required to run the function locally"))?;
    if code_uri.starts_with("s3://") {
        bail!("{id}: CodeUri {code_uri} is in S3; only a local folder can be built and run");
    }
    let base = stack.template.path.parent().unwrap_or(Path::new("."));
    let dir = base.join(&code_uri);
    let method = resource
        .pointer("/Metadata/BuildMethod")
        .and_then(Value::as_str);
    if dir.join("Cargo.toml").exists() {
        if let Some(other) = method.filter(|m| *m != "rust-cargolambda") {
            bail!("{id}: BuildMethod {other} cannot build a Rust crate; use rust-cargolambda");
        }
        let binary = resource
            .pointer("/Metadata/BuildProperties/Binary")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                anyhow!("{id}: Metadata.BuildProperties.Binary must name the crate's binary (sam build needs it too)")
            })?;
        return Ok(Source::Cargo {
            dir,
            binary: binary.to_owned(),
        });
    }
    let handler = properties
        .get("Handler")
        .map(scalar_to_string)
        .unwrap_or_else(|| "bootstrap".into());
    let executable = dir.join(&handler);
    if executable.is_file() {
        return Ok(Source::Executable(executable));
    }
    bail!(
        "{id}: {} holds neither a Cargo.toml nor an executable {handler}",
        dir.display()
    )
}

/// Builds (or finds) the binary of every function of `stacks`, keyed by function id.
/// `release` builds with cargo's release profile, as Lambda's bootstraps are.
pub async fn build_all(stacks: &[Stack], release: bool) -> Result<HashMap<String, PathBuf>> {
    let mut sources: Vec<(String, Source)> = Vec::new();
    for stack in stacks {
        for (logical, resource) in stack.template.resources_of("AWS::Serverless::Function") {
            if !stack.scope.resources.contains_key(logical) {
                continue; // its Condition is false
            }
            sources.push((function_id(stack, logical), source(stack, logical, resource)?));
        }
    }
    let mut built: HashMap<Source, PathBuf> = HashMap::new();
    let mut out = HashMap::new();
    for (id, source) in sources {
        let path = match built.get(&source) {
            Some(path) => path.clone(),
            None => {
                let path = match &source {
                    Source::Executable(path) => path.clone(),
                    Source::Cargo { dir, binary } => cargo_build(dir, binary, release)
                        .await
                        .with_context(|| format!("building {id}"))?,
                };
                built.insert(source.clone(), path.clone());
                path
            }
        };
        out.insert(id, path);
    }
    Ok(out)
}

/// `cargo build --bin <binary>` in `dir`; the executable cargo reports.
async fn cargo_build(dir: &Path, binary: &str, release: bool) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = tokio::process::Command::new(cargo);
    command
        .current_dir(dir)
        .args(["build", "--message-format=json-render-diagnostics", "--bin", binary])
        .stdout(std::process::Stdio::piped())
        // Progress and diagnostics go where the gateway's own logs go.
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    if release {
        command.arg("--release");
    }
    tracing::info!(binary, dir = %dir.display(), release, "building function with cargo");
    let output = command
        .output()
        .await
        .with_context(|| format!("cannot run cargo in {}", dir.display()))?;
    if !output.status.success() {
        bail!(
            "cargo build --bin {binary} in {} failed ({})",
            dir.display(),
            output.status
        );
    }
    executable_of(&String::from_utf8_lossy(&output.stdout), binary)
        .ok_or_else(|| anyhow!("cargo built no executable named {binary} in {}", dir.display()))
}

/// The `executable` of the `compiler-artifact` message for the bin target `binary`.
fn executable_of(messages: &str, binary: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == binary)
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_comes_from_the_bin_artifact_of_that_name() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"name":"basic_auth","kind":["lib"]},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"other","kind":["bin"]},"executable":"/t/debug/other"}"#,
            r#"{"reason":"compiler-artifact","target":{"name":"basic-auth-authorizer","kind":["bin"]},"executable":"/t/debug/basic-auth-authorizer"}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        assert_eq!(
            executable_of(&messages, "basic-auth-authorizer"),
            Some(PathBuf::from("/t/debug/basic-auth-authorizer"))
        );
        assert_eq!(executable_of(&messages, "missing"), None);
    }
}
