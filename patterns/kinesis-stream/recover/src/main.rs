//! `kinesis-recover`: recovers the records of Kinesis batches that ended in the on-failure queue.
//!
//! ```text
//! kinesis-recover --queue <on-failure-queue-url> [--table <events-table>] [--replay consumer|stream|dry-run] [--max N]
//! ```
//! Honours `AWS_ENDPOINT_URL`, so it works against AWS and the local stack alike.

use anyhow::{Context as _, Result, bail};
use kinesis_stream_recover::{Recovery, Replay, recover};

const USAGE: &str = "usage: kinesis-recover --queue URL [--table NAME] [--replay consumer|stream|dry-run] [--max N]";

#[tokio::main]
async fn main() -> Result<()> {
    let (mut queue, mut table, mut replay, mut max) = (None, None, Replay::Consumer, 100);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--queue" => queue = Some(args.next().context("--queue needs a URL")?),
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
    let queue = queue.context(USAGE)?;
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
        consumer,
        replay,
    };
    let report = recover(&recovery, &queue, max).await?;
    if report.is_empty() {
        println!("no failure messages in {queue}");
    }
    for r in &report {
        println!(
            "{} {}..{}: {} of {} {}, {} expired, {} still failing{}",
            r.shard_id,
            r.start,
            r.end,
            r.recovered,
            r.expected,
            if replay == Replay::DryRun {
                "still retained (dry run)"
            } else {
                "recovered"
            },
            r.expired,
            r.still_failing,
            if r.deleted {
                "; failure message deleted"
            } else {
                "; failure message kept"
            }
        );
    }
    let incomplete = report.iter().any(|r| !r.deleted) && replay != Replay::DryRun;
    if incomplete {
        std::process::exit(3);
    }
    Ok(())
}
