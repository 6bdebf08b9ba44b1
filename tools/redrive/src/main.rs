//! `sqs-redrive DLQ_URL [--to QUEUE_URL] [--max N]`: moves dead-lettered messages back.
//!
//! Honours `AWS_ENDPOINT_URL`, so the same command works against AWS and the local stack.

use anyhow::{Context as _, Result, bail};

#[tokio::main]
async fn main() -> Result<()> {
    let mut from = None;
    let mut to = None;
    let mut max = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--to" => to = Some(args.next().context("--to needs a queue URL")?),
            "--max" => {
                max = Some(
                    args.next()
                        .context("--max needs a number")?
                        .parse()
                        .context("--max must be a number")?,
                )
            }
            "-h" | "--help" => {
                println!("usage: sqs-redrive DLQ_URL [--to QUEUE_URL] [--max N]");
                return Ok(());
            }
            url if from.is_none() && !url.starts_with('-') => from = Some(url.to_owned()),
            other => bail!(
                "unexpected argument {other:?}; usage: sqs-redrive DLQ_URL [--to QUEUE_URL] [--max N]"
            ),
        }
    }
    let from = from.context("usage: sqs-redrive DLQ_URL [--to QUEUE_URL] [--max N]")?;
    let sqs = aws_sdk_sqs::Client::new(&aws_setup::load().await);
    let to = match to {
        Some(to) => to,
        None => sqs_redrive::source_queue_of(&sqs, &from).await?,
    };
    let moved = sqs_redrive::redrive(&sqs, &from, &to, max).await?;
    println!("moved {moved} message(s) from {from} to {to}");
    Ok(())
}
