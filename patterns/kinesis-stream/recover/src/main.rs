//! `kinesis-recover`: recovers the records of Kinesis batches that ended in the on-failure
//! destination: an S3 bucket (the records are in the objects) or an SQS queue (metadata only: the
//! records are read back from the stream while it retains them).
//!
//! ```text
//! kinesis-recover (--bucket <on-failure-bucket> | --queue <on-failure-queue-url>) [--table <events-table>]
//!                 [--replay consumer|stream|dry-run] [--max N]
//! ```
//! Honours `AWS_ENDPOINT_URL`, so it works against AWS and the local stack alike.

use anyhow::{Context as _, Result, bail};
use kinesis_stream_recover::{Recovery, Replay, recover, recover_bucket};

const USAGE: &str = "usage: kinesis-recover (--bucket NAME | --queue URL) [--table NAME] [--replay consumer|stream|dry-run] [--max N]";

/// Where the failed batches are kept.
enum Source {
    Bucket(String),
    Queue(String),
}

#[tokio::main]
async fn main() -> Result<()> {
    let (mut queue, mut bucket, mut table, mut replay, mut max) =
        (None, None, None, Replay::Consumer, 100);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--queue" => queue = Some(args.next().context("--queue needs a URL")?),
            "--bucket" => bucket = Some(args.next().context("--bucket needs a name")?),
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
    let source = match (bucket, queue) {
        (Some(bucket), None) => Source::Bucket(bucket),
        (None, Some(queue)) => Source::Queue(queue),
        _ => bail!("give exactly one of --bucket and --queue\n{USAGE}"),
    };
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
    let (report, place) = match &source {
        Source::Bucket(bucket) => (recover_bucket(&recovery, bucket, max).await?, bucket),
        Source::Queue(queue) => (recover(&recovery, queue, max).await?, queue),
    };
    if report.is_empty() {
        println!("no failed batches in {place}");
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
                "; failure record deleted"
            } else {
                "; failure record kept"
            }
        );
    }
    let incomplete = report.iter().any(|r| !r.deleted) && replay != Replay::DryRun;
    if incomplete {
        std::process::exit(3);
    }
    Ok(())
}
