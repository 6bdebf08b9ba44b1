//! `kinesis-recover`: recovers the records of Kinesis batches the event source gave up on.
//!
//! ```text
//! kinesis-recover --bucket <on-failure-bucket> [--table <events-table>] [--replay consumer|stream|dry-run] [--max N]
//! kinesis-recover --queue <on-failure-queue-url> [--table <events-table>] [--replay consumer|stream|dry-run] [--max N]
//! kinesis-recover --from-file <s3-failure-object.json>... [--table <events-table>] [--replay consumer|stream|dry-run]
//! ```
//! `--bucket` reads the objects an Amazon S3 destination (this pattern's) wrote, whose records are
//! inside, and deletes each once recovered; `--queue` reads the metadata an SQS destination keeps
//! and fetches the records from the stream; `--from-file` reads downloaded S3 objects. Honours `AWS_ENDPOINT_URL`, so it works against
//! AWS and the local stack alike.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use kinesis_stream_recover::{Recovered, Recovery, Replay, recover, recover_bucket, recover_file};

const USAGE: &str = "usage: kinesis-recover (--bucket NAME [--max N] | --queue URL [--max N] | --from-file PATH...) [--table NAME] [--replay consumer|stream|dry-run]";

#[tokio::main]
async fn main() -> Result<()> {
    let (mut queue, mut bucket, mut table, mut replay, mut max) =
        (None, None, None, Replay::Consumer, 100);
    let mut files: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--queue" => queue = Some(args.next().context("--queue needs a URL")?),
            "--bucket" => bucket = Some(args.next().context("--bucket needs a name")?),
            "--from-file" => files.push(args.next().context("--from-file needs a path")?.into()),
            "--table" => table = Some(args.next().context("--table needs a name")?),
            "--max" => {
                max = args
                    .next()
                    .context("--max needs a number")?
                    .parse()
                    .context("--max must be a number")?
            }
            "--replay" => {
                replay = match args.next().as_deref() {
                    Some("consumer") => Replay::Consumer,
                    Some("stream") => Replay::Stream,
                    Some("dry-run") => Replay::DryRun,
                    other => bail!("--replay must be consumer, stream or dry-run, got {other:?}"),
                }
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unexpected argument {other:?}\n{USAGE}"),
        }
    }
    let sources = usize::from(queue.is_some())
        + usize::from(bucket.is_some())
        + usize::from(!files.is_empty());
    if sources != 1 {
        bail!("give one of --bucket, --queue and --from-file\n{USAGE}");
    }
    let sdk = aws_setup::load().await;
    let consumer = match (replay, table) {
        (Replay::Consumer, None) => {
            bail!("--replay consumer needs --table (the events table)\n{USAGE}")
        }
        (Replay::Consumer, Some(table)) => {
            let config = kinesis_stream_consumer::Config::from_lookup(|k| {
                (k == "TABLE_NAME").then(|| table.clone())
            })?;
            Some(kinesis_stream_consumer::Consumer::from_config(
                &config,
                aws_sdk_dynamodb::Client::new(&sdk),
            ))
        }
        _ => None,
    };
    let recovery = Recovery {
        kinesis: aws_sdk_kinesis::Client::new(&sdk),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        // Path-style addressing against a local emulator (AWS_ENDPOINT_URL), as S3 needs there.
        s3: aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(std::env::var_os("AWS_ENDPOINT_URL").is_some())
                .build(),
        ),
        consumer,
        replay,
    };
    if let Some(bucket) = bucket {
        let report = recover_bucket(&recovery, &bucket, max).await?;
        if report.is_empty() {
            println!("no failed batches in {bucket}");
        }
        for r in &report {
            let outcome = if r.deleted {
                "failure record deleted"
            } else {
                "failure record kept"
            };
            println!("{}; {outcome}", line(r, replay, false));
        }
        if report.iter().any(|r| !r.deleted) && replay != Replay::DryRun {
            std::process::exit(3);
        }
        return Ok(());
    }
    let incomplete = match queue {
        Some(queue) => {
            let report = recover(&recovery, &queue, max).await?;
            if report.is_empty() {
                println!("no failure messages in {queue}");
            }
            for r in &report {
                let outcome = if r.deleted {
                    "failure message deleted"
                } else {
                    "failure message kept"
                };
                println!("{}; {outcome}", line(r, replay, false));
            }
            report.iter().any(|r| !r.deleted)
        }
        None => {
            let mut incomplete = false;
            for file in &files {
                let r = recover_file(&recovery, file).await?;
                println!("{}: {}", file.display(), line(&r, replay, true));
                incomplete |= !r.complete;
            }
            incomplete
        }
    };
    if incomplete && replay != Replay::DryRun {
        std::process::exit(3);
    }
    Ok(())
}

/// One report line. (`make demo` reads "N of M still retained" from a queue's dry run.)
fn line(r: &Recovered, replay: Replay, from_file: bool) -> String {
    let (found, gone) = match (replay == Replay::DryRun, from_file) {
        (true, false) => ("still retained (dry run)", "expired"),
        (true, true) => ("in the file (dry run)", "missing from the file"),
        (false, false) => ("recovered", "expired"),
        (false, true) => ("recovered", "missing from the file"),
    };
    format!(
        "{} {}..{}: {} of {} {found}, {} {gone}, {} still failing",
        r.shard_id, r.start, r.end, r.recovered, r.expected, r.expired, r.still_failing,
    )
}
