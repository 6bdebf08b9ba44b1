//! Which functions are measured, and how big each one's deployment is.
//!
//! The Rust functions are every function of the root template, built as `sam build` would
//! declare them (`CodeUri`, `BuildProperties.Binary`) but for this machine, with the release
//! profile (`--quick`: the debug builds `make functions` made); one subject per binary, since
//! the three patterns' authorizers are one binary. The seeds are the Python and Node.js handlers
//! in `tools/bench/seeds`, with the interpreters `make bench-envs` installs.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

use crate::functions::{Runtime, Subject, Workload};

/// The workload of each of the project's binaries. The gateway's builds are copies named after
/// the binary with a suffix (`sqs-buffer-consumer-1234`), so that a rebuild never changes a
/// running one.
fn workload_of(file_name: &str) -> Option<Workload> {
    let binary = file_name
        .rsplit_once('-')
        .filter(|(_, suffix)| suffix.chars().all(|c| c.is_ascii_digit()))
        .map_or(file_name, |(name, _)| name);
    Some(match binary {
        "basic-auth-authorizer" => Workload::Authorizer,
        "sqs-buffer-consumer" => Workload::SqsBatch,
        "kinesis-stream-consumer" => Workload::KinesisBatch,
        "user-api-consumer" => Workload::UserApi,
        "async-invoke-processor" => Workload::Processor,
        "async-invoke-error-handler" => Workload::ErrorHandler,
        _ => return None,
    })
}

/// A Rust subject, with the template's function ids that run it.
#[derive(Debug, Clone)]
pub struct RustFunction {
    /// The subject.
    pub subject: Subject,
    /// The functions of the template (`SqsBuffer.ConsumerFunction`) that deploy this binary.
    pub function_ids: Vec<String>,
}

/// Builds every function of `root`'s template and gives one subject per binary.
pub async fn rust_functions(root: &Path, release: bool) -> Result<Vec<RustFunction>> {
    let built =
        local_gateway::functions::build::build_template(&root.join("template.yaml"), release)
            .await
            .context("building the template's functions")?;
    let mut by_binary: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for (id, binary) in built {
        by_binary.entry(binary).or_default().push(id);
    }
    let mut functions = Vec::new();
    for (binary, mut ids) in by_binary {
        let name = binary
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let Some(workload) = workload_of(name) else {
            bail!(
                "the template deploys {}, which the bench has no workload for (add it to subjects.rs)",
                binary.display()
            );
        };
        ids.sort();
        functions.push(RustFunction {
            subject: Subject {
                workload,
                runtime: Runtime::Rust,
                binary,
                handler: "bootstrap".into(),
                variables: BTreeMap::new(),
            },
            function_ids: ids,
        });
    }
    functions.sort_by_key(|f| f.subject.workload);
    Ok(functions)
}

/// Where the seeds' interpreters are, or why they are missing.
pub fn seeds(root: &Path) -> Result<Vec<Subject>> {
    let dir = root.join("tools/bench/seeds");
    let python = root.join(".venv-bench/bin/python");
    let modules = dir.join("node/node_modules/@aws-sdk/client-dynamodb");
    if !python.exists() || !modules.exists() {
        bail!(
            "the seeds' environments are missing ({} or {}): `make bench-envs` installs them",
            python.display(),
            modules.display()
        );
    }
    // Node.js 20 from PyPI, linked by `make bench-envs`; the Node.js of the machine, if any, is
    // not used, so that every run measures the same version.
    let node = root.join(".venv-bench/nodejs/bin/node");
    if !node.exists() {
        bail!(
            "{} is missing: `make bench-envs` installs Node.js into .venv-bench",
            node.display()
        );
    }
    let mut subjects = Vec::new();
    for (workload, module, file) in [
        (Workload::Authorizer, "authorizer", "authorizer"),
        (Workload::SqsBatch, "sqs_consumer", "sqs-consumer"),
        (
            Workload::KinesisBatch,
            "kinesis_consumer",
            "kinesis-consumer",
        ),
    ] {
        subjects.push(Subject {
            workload,
            runtime: Runtime::Python,
            binary: dir.join("python/bootstrap"),
            handler: format!("{module}.handler"),
            variables: [("BENCH_PYTHON".to_owned(), python.display().to_string())].into(),
        });
        subjects.push(Subject {
            workload,
            runtime: Runtime::Node,
            binary: dir.join("node/bootstrap"),
            handler: format!("{file}.handler"),
            variables: [("BENCH_NODE".to_owned(), node.display().to_string())].into(),
        });
    }
    Ok(subjects)
}

/// How big a function's deployment is.
#[derive(Debug, Clone, Default)]
pub struct Size {
    /// The binary measured here (this machine's build), in bytes.
    pub native: Option<u64>,
    /// The arm64 `bootstrap` `make build` made, in bytes, when there is one.
    pub arm64: Option<u64>,
    /// What that `bootstrap` takes zipped (deflate at level 9, plus the zip's headers).
    pub arm64_zip: Option<u64>,
    /// For a seed: its handler's source, in bytes (the SDK comes with Lambda's runtime).
    pub source: Option<u64>,
}

/// The size of a Rust function: its binary, and the arm64 build under `.aws-sam/build` for any
/// of `function_ids` (`SqsBuffer.ConsumerFunction` is `.aws-sam/build/SqsBuffer/ConsumerFunction`
/// for the root template; a pattern's own template puts it at `.aws-sam/build/ConsumerFunction`).
pub fn rust_size(root: &Path, function: &RustFunction) -> Result<Size> {
    let native = std::fs::metadata(&function.subject.binary)
        .map(|m| m.len())
        .ok();
    let build = root.join(".aws-sam/build");
    let arm64 = function.function_ids.iter().find_map(|id| {
        let nested = build.join(id.replace('.', "/")).join("bootstrap");
        let alone = build
            .join(id.rsplit('.').next().unwrap_or(id))
            .join("bootstrap");
        [nested, alone].into_iter().find(|p| p.is_file())
    });
    let (arm64, arm64_zip) = match arm64 {
        Some(path) => {
            let bytes =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            (Some(bytes.len() as u64), Some(zipped_size(&bytes)?))
        }
        None => (None, None),
    };
    Ok(Size {
        native,
        arm64,
        arm64_zip,
        source: None,
    })
}

/// The size of a seed: its handler's source file.
pub fn seed_size(subject: &Subject) -> Size {
    let dir = subject.binary.parent().unwrap_or(Path::new("."));
    let module = subject.handler.split('.').next().unwrap_or_default();
    let file = match subject.runtime {
        Runtime::Python => dir.join(format!("{module}.py")),
        _ => dir.join(format!("{module}.mjs")),
    };
    Size {
        source: std::fs::metadata(file).map(|m| m.len()).ok(),
        ..Size::default()
    }
}

/// What a zip holding one file named `bootstrap` with these bytes takes: the deflated data
/// (level 9, as `zip -9`) and the zip's local header, central directory entry and end record.
pub fn zipped_size(bytes: &[u8]) -> Result<u64> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    let deflated = encoder.finish()?.len() as u64;
    let name = "bootstrap".len() as u64;
    Ok(deflated + (30 + name) + (46 + name) + 22)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zip_of_repetitive_bytes_is_far_smaller_and_of_random_ones_is_not() {
        let repetitive = vec![7u8; 1 << 20];
        assert!(zipped_size(&repetitive).expect("zips") < 10_000);
        let random: Vec<u8> = (0..1 << 16).map(|_| fastrand::u8(..)).collect();
        let size = zipped_size(&random).expect("zips");
        assert!(size >= random.len() as u64, "{size}");
    }

    #[test]
    fn every_binary_of_the_templates_has_a_workload() {
        for name in [
            "basic-auth-authorizer",
            "sqs-buffer-consumer",
            "kinesis-stream-consumer",
            "user-api-consumer",
            "async-invoke-processor",
            "async-invoke-error-handler",
        ] {
            assert!(workload_of(name).is_some(), "{name}");
        }
        assert_eq!(
            workload_of("sqs-buffer-consumer-10178490"),
            Some(Workload::SqsBatch)
        );
        assert!(workload_of("kinesis-recover").is_none());
    }
}
