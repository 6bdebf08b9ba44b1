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

use crate::cfn::{Scope, Template, scalar_to_string};
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

/// Where the code of the function `id` (the resource `resource` of `template`) comes from.
pub fn source(template: &Template, scope: &Scope, id: &str, resource: &Value) -> Result<Source> {
    let properties = scope
        .resolve(resource.get("Properties").unwrap_or(&Value::Null))
        .map_err(|e| anyhow!("{id}: {e}"))?;
    let code_uri = properties
        .get("CodeUri")
        .map(scalar_to_string)
        .ok_or_else(|| anyhow!("{id}: CodeUri is required to run the function locally"))?;
    if code_uri.starts_with("s3://") {
        bail!("{id}: CodeUri {code_uri} is in S3; only a local folder can be built and run");
    }
    let base = template.path.parent().unwrap_or(Path::new("."));
    let dir = base.join(&code_uri);
    // One crate reached from several templates (`../../shared/basic-auth`) is built once.
    let dir = dir.canonicalize().unwrap_or(dir);
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
            let id = function_id(stack, logical);
            let source = source(&stack.template, &stack.scope, &id, resource)?;
            sources.push((id, source));
        }
    }
    build_sources(sources, release).await
}

/// Builds every function of the template at `path` and of the templates it nests, with the
/// parameters' defaults and no emulator (`local-gateway --build-only`, which `make test` runs
/// first so that no test waits on a compiler).
pub async fn build_template(path: &Path, release: bool) -> Result<HashMap<String, PathBuf>> {
    let mut sources = Vec::new();
    collect(path, "", &mut sources)?;
    build_sources(sources, release).await
}

fn collect(path: &Path, stack_path: &str, out: &mut Vec<(String, Source)>) -> Result<()> {
    let template = Template::load(path)?;
    let scope = Scope::for_checks(&template)?;
    for (logical, resource) in template.resources() {
        if let Some(condition) = resource.get("Condition").and_then(Value::as_str)
            && !scope
                .condition(condition)
                .map_err(|e| anyhow!("{logical}: {e}"))?
        {
            continue;
        }
        let id = if stack_path.is_empty() {
            logical.clone()
        } else {
            format!("{stack_path}.{logical}")
        };
        match resource.get("Type").and_then(Value::as_str) {
            Some("AWS::Serverless::Function") => {
                out.push((id.clone(), source(&template, &scope, &id, resource)?));
            }
            Some("AWS::Serverless::Application") => {
                let location = resource
                    .pointer("/Properties/Location")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow!("{id}: Location must be a local template path"))?;
                let child = path.parent().unwrap_or(Path::new(".")).join(location);
                collect(&child, &id, out)?;
            }
            _ => {}
        }
    }
    Ok(())
}

async fn build_sources(
    sources: Vec<(String, Source)>,
    release: bool,
) -> Result<HashMap<String, PathBuf>> {
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

/// `cargo build --bin <binary>` in `dir`; the executable cargo reports, pinned (see [`pin`]).
pub async fn cargo_build(dir: &Path, binary: &str, release: bool) -> Result<PathBuf> {
    tracing::info!(binary, dir = %dir.display(), release, "building function with cargo");
    let mut args = vec!["--bin", binary];
    if release {
        args.push("--release");
    }
    let built = cargo_executable(dir, &args, binary).await?;
    pin(&built, binary).await
}

/// `cargo build --message-format=json-render-diagnostics <args>` in `dir`, with cargo's progress
/// and errors on stderr: the executable cargo reports for the bin target `binary`.
pub async fn cargo_executable(dir: &Path, args: &[&str], binary: &str) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // `spawn` then `wait_with_output`, not `output()`, which would capture stderr too: cargo's
    // progress and a compiler error must reach the user.
    let output = tokio::process::Command::new(cargo)
        .current_dir(dir)
        .args(["build", "--message-format=json-render-diagnostics"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run cargo in {}", dir.display()))?
        .wait_with_output()
        .await
        .with_context(|| format!("cargo in {} did not finish", dir.display()))?;
    if !output.status.success() {
        bail!(
            "cargo build {} in {} failed ({})",
            args.join(" "),
            dir.display(),
            output.status
        );
    }
    executable_of(&String::from_utf8_lossy(&output.stdout), binary).ok_or_else(|| {
        anyhow!(
            "cargo built no executable named {binary} in {}",
            dir.display()
        )
    })
}

/// A name of its own for the binary cargo just built, that no later build moves: cargo replaces
/// `target/<profile>/<binary>` on every build, also a no-op one (remove, then link), so another
/// gateway's build could make a cold start find no file, and a rebuild would change the code of
/// a running stack. A hard link (`.local-gateway/<binary>-<inode>`) keeps this build's file,
/// costs no space while cargo's copy exists, and is made atomically.
async fn pin(built: &Path, binary: &str) -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    let dir = built
        .parent()
        .unwrap_or(Path::new("."))
        .join(".local-gateway");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // The file can be missing for an instant while a concurrent cargo build replaces it.
    let mut attempt = 0;
    let metadata = loop {
        match std::fs::metadata(built) {
            Ok(m) => break m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempt < 50 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", built.display())),
        }
    };
    let pinned = dir.join(format!("{binary}-{}", metadata.ino()));
    if pinned.exists() {
        return Ok(pinned);
    }
    let partial = dir.join(format!(
        "{binary}-{}.{}.partial",
        metadata.ino(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&partial);
    if std::fs::hard_link(built, &partial).is_err() {
        std::fs::copy(built, &partial)
            .with_context(|| format!("cannot copy {}", built.display()))?;
    }
    std::fs::rename(&partial, &pinned)
        .with_context(|| format!("cannot write {}", pinned.display()))?;
    forget_old_pins(&dir, binary, &pinned);
    Ok(pinned)
}

/// Removes pins of `binary` built over a week ago, but for `keep` (a stack that runs a week on one
/// build keeps running: removing a name never stops a process that runs it).
fn forget_old_pins(dir: &Path, binary: &str, keep: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let week = std::time::Duration::from_secs(7 * 86_400);
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(binary))
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()));
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > week);
        if ours && old && path != keep {
            let _ = std::fs::remove_file(path);
        }
    }
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
