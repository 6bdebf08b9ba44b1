//! `patterns-chaos` (`make chaos`): a seeded load of every pattern through injected faults, then
//! an account of every request. See the README's "Chaos and load" section.
//!
//! ```text
//! patterns-chaos [--requests N] [--seed S] [--concurrency N] [--out DIR] [--gateway PATH]
//!                [--function-binary ID=PATH]... [--no-faults]
//! ```
//!
//! moto is reached through `MOTO_ENDPOINT` (`tools/with-moto.sh` starts one). Exits 0 when every
//! accepted request reached exactly one terminal state and every fault class was injected, 1
//! when the account found a problem, 2 on a usage error, 3 when the run could not finish.

mod gateway;
mod patterns;
mod proxy;
mod run;
mod usage;

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};

fn usage() -> &'static str {
    "usage: patterns-chaos [--requests N] [--seed S] [--concurrency N] [--out DIR] \
     [--gateway PATH] [--function-binary ID=PATH]... [--no-faults] [--patterns A,B]\n\
     --requests: over the four patterns (default 10000); --seed: replays a run (default: \
     random, printed); --concurrency: requests in flight outside the burst (default 16); --out: \
     the gateway's log, state and report.json (default .local/chaos); --gateway: the \
     local-gateway executable (default: beside this one); --function-binary: run PATH for the \
     function ID instead of its build (the gateway's option); --no-faults: the same load on a \
     healthy stack; --patterns: drive only these (SqsBuffer, UserApi, KinesisStream, AsyncInvoke)"
}

fn parse() -> Result<run::Options> {
    let here = std::env::current_exe().context("cannot find this executable")?;
    let mut options = run::Options {
        requests: 10_000,
        seed: fastrand::u64(..),
        gateway: here.with_file_name("local-gateway"),
        root: std::env::current_dir()?,
        moto: std::env::var("MOTO_ENDPOINT").unwrap_or_default(),
        out: PathBuf::from(".local/chaos"),
        concurrency: 16,
        function_binaries: Vec::new(),
        faults: true,
        patterns: patterns::PATTERNS.iter().map(|k| (*k).to_owned()).collect(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{}", usage()))
        };
        let number = |v: String, what: &str| -> Result<u64> {
            v.parse::<u64>()
                .with_context(|| format!("{what} must be a whole number, got {v:?}"))
        };
        match arg.as_str() {
            "--requests" => {
                options.requests = number(value()?, "--requests")? as usize;
                if options.requests < 40 {
                    bail!("--requests must be at least 40 (ten per pattern)");
                }
            }
            "--seed" => options.seed = number(value()?, "--seed")?,
            "--concurrency" => {
                options.concurrency = number(value()?, "--concurrency")?.max(1) as usize
            }
            "--out" => options.out = value()?.into(),
            "--gateway" => options.gateway = value()?.into(),
            "--function-binary" => options.function_binaries.push(value()?),
            "--no-faults" => options.faults = false,
            "--patterns" => {
                let list = value()?;
                options.patterns = list
                    .split(',')
                    .map(|k| k.trim().to_owned())
                    .filter(|k| !k.is_empty())
                    .collect();
                for key in &options.patterns {
                    if !patterns::PATTERNS.contains(&key.as_str()) {
                        bail!(
                            "--patterns: unknown pattern {key:?} (one of {})",
                            patterns::PATTERNS.join(", ")
                        );
                    }
                }
                if options.patterns.is_empty() {
                    bail!("--patterns needs at least one pattern");
                }
            }
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{}", usage()),
        }
    }
    if options.moto.is_empty() {
        bail!(
            "MOTO_ENDPOINT is not set: run through `make chaos` (tools/with-moto.sh starts moto)"
        );
    }
    if !options.gateway.is_file() {
        bail!(
            "no local gateway at {}: build it with `make gateway`, or name it with --gateway",
            options.gateway.display()
        );
    }
    Ok(options)
}

fn main() {
    let options = match parse() {
        Ok(options) => options,
        Err(error) => {
            eprintln!("patterns-chaos: {error:#}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("patterns-chaos: cannot start the async runtime: {error}");
            std::process::exit(2);
        }
    };
    match runtime.block_on(run::run(&options)) {
        Ok(report) => {
            print!("{}", run::render(&report));
            let path = options.out.join("report.json");
            match serde_json::to_vec_pretty(&report) {
                Ok(bytes) => {
                    if let Err(error) = std::fs::write(&path, bytes) {
                        eprintln!("patterns-chaos: cannot write {}: {error}", path.display());
                    }
                }
                Err(error) => eprintln!("patterns-chaos: cannot encode the report: {error}"),
            }
            std::process::exit(if report.ok() { 0 } else { 1 });
        }
        Err(error) => {
            // Not an account: the run could not finish (the stack did not start, moto could
            // not be read). Its own code, so no caller takes it for problems found.
            eprintln!("patterns-chaos: the run could not finish: {error:#}");
            std::process::exit(3);
        }
    }
}
