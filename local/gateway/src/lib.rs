//! The local gateway: serves the patterns' SAM templates on moto, with no Docker and no AWS
//! account.
//!
//! It reads the root template, follows the nested applications to the pattern templates,
//! provisions their queues, tables and secrets in moto ([`stack`]), builds each function's own
//! binary and runs it as Lambda does, a process per execution environment behind a Runtime API
//! ([`functions`]), serves the HTTP and REST APIs with their authorizers and integrations
//! ([`apigw`]: one API Gateway core, two front ends) and emulates the event source mappings ([`sqs_esm`],
//! [`kinesis_esm`]) and asynchronous invokes ([`event_queue`]). Everything it does is read from
//! the templates: change a batch size or a redrive count there and local behaviour follows. It
//! knows no pattern: a function added to a template runs with no change here.

pub mod apigw;
pub mod cfn;
pub mod cloudwatch;
pub mod durable;
pub mod event_queue;
pub mod functions;
pub mod kinesis_checks;
pub mod kinesis_esm;
pub mod lambda_api;
pub mod logs;
pub mod run;
pub mod sigv4;
pub mod sqs_checks;
pub mod sqs_esm;
pub mod stack;
pub mod status;
pub mod tasks;

/// Account id the local stack reports (moto's default account).
pub const ACCOUNT_ID: &str = "123456789012";

/// A random string of ASCII letters and digits.
pub fn random_alnum(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        // Bytes 6 and 8 of a v4 UUID carry its version and variant bits: only the others are random.
        let bytes = uuid::Uuid::new_v4().into_bytes();
        for (_, &byte) in bytes.iter().enumerate().filter(|(i, _)| *i != 6 && *i != 8) {
            // 248 = 4 * 62: rejecting the rest keeps every character equally likely.
            if byte < 248 && out.len() < len {
                out.push(ALPHABET[(byte % 62) as usize] as char);
            }
        }
    }
    out
}
