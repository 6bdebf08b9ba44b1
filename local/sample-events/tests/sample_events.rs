//! Every sample event in `events/` is a fixture of record: it deserialises into its
//! `aws_lambda_events` type and runs through the real handler, against moto, with the outcome
//! the file name promises. A new file without an expectation here fails the test.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use std::path::{Path, PathBuf};

use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use aws_lambda_events::sqs::SqsEvent;

/// What running a sample event must give.
#[derive(Debug)]
enum Expect {
    /// The Basic-auth authorizer answers `isAuthorized` with this value.
    Authorized(bool),
    /// The sqs-buffer consumer reports these message ids as failed and stores exactly these
    /// items (event id, the `apiRequestId` the message's attribute carries).
    SqsBuffer {
        failed: &'static [&'static str],
        stored: &'static [(&'static str, &'static str)],
    },
    /// The Basic-auth authorizer answers a REST API event with a policy of this effect.
    RestPolicy(&'static str),
    /// The user-api consumer reports these failures, creates these users (by email) and records
    /// these statuses (the id the client polls: the `requestId` attribute, else the message id;
    /// state) for requests that created none. Every user and status item carries the
    /// `apiRequestId` attribute of the message that made it, when that message has one.
    Users {
        failed: &'static [&'static str],
        emails: &'static [&'static str],
        statuses: &'static [(&'static str, &'static str)],
        /// Two requests of one batch for one email: the records of a batch run concurrently,
        /// so either may win; exactly one of them ends `EMAIL_TAKEN`.
        email_race: Option<(&'static str, &'static str)>,
    },
    /// The async-invoke processor or error handler leaves this job in this status.
    AsyncJob {
        handler: &'static str,
        job_id: &'static str,
        status: &'static str,
    },
    /// The kinesis-stream consumer reports this lowest failed sequence number (if any) and the
    /// table then holds these items with these sequence numbers and the `apiRequestId` of the
    /// API's envelope.
    KinesisStream {
        failed: Option<&'static str>,
        stored: &'static [(&'static str, &'static str, &'static str)],
    },
}

fn expectation(relative: &str) -> Option<Expect> {
    Some(match relative {
        "sqs-buffer/authorizer-allow.json" => Expect::Authorized(true),
        "sqs-buffer/authorizer-wrong-password.json" => Expect::Authorized(false),
        "sqs-buffer/authorizer-missing-header.json" => Expect::Authorized(false),
        "sqs-buffer/sqs-batch.json" => Expect::SqsBuffer {
            failed: &[],
            stored: &[
                ("0c7d1a4e-6f1b-4a8e-9e62-1f0f3c5a0003", "Wlu0viLNoAMEb2w="),
                ("9b2f1c1e-2d34-4a55-8e0b-7f6c2a9d0c11", "Wlu0vhUYoAMEbKg="),
                ("f5337ee6-e13e-4bcb-8082-872898b5d1a8", "Wlu0vgxXIAMEb7A="),
            ],
        },
        "sqs-buffer/sqs-batch-with-poison.json" => Expect::SqsBuffer {
            failed: &["5e0d8c2a-1b7f-4c3d-a9e8-2b6f4d1c0002"],
            stored: &[
                ("3d6f0a5e-8c1b-4f2a-b7d9-0e4c6a8b2f01", "Wlu1AhFWIAMEbjw="),
                ("7a1c9e3b-5d2f-4b8a-9c6e-1f3a5d7b9c02", "Wlu1AjLcoAMEbLQ="),
            ],
        },
        "kinesis-stream/authorizer-allow.json" => Expect::RestPolicy("Allow"),
        "kinesis-stream/authorizer-wrong-password.json" => Expect::RestPolicy("Deny"),
        // API Gateway answers 401 itself without the header; invoked anyway, the authorizer denies.
        "kinesis-stream/authorizer-missing-header.json" => Expect::RestPolicy("Deny"),
        "kinesis-stream/kinesis-batch.json" => Expect::KinesisStream {
            failed: None,
            stored: &[
                (
                    "order-42",
                    "49656612000000000000000000000000000000000000000000000003",
                    "3f2b8c1d-5e6a-4b7c-8d9e-0a1b2c3d4003",
                ),
                (
                    "order-43",
                    "49656612000000000000000000000000000000000000000000000002",
                    "3f2b8c1d-5e6a-4b7c-8d9e-0a1b2c3d4002",
                ),
            ],
        },
        "kinesis-stream/kinesis-batch-with-poison.json" => Expect::KinesisStream {
            failed: Some("49656612000000000000000000000000000000000000000000000002"),
            stored: &[
                (
                    "order-50",
                    "49656612000000000000000000000000000000000000000000000001",
                    "3f2b8c1d-5e6a-4b7c-8d9e-0a1b2c3d4001",
                ),
                (
                    "order-52",
                    "49656612000000000000000000000000000000000000000000000003",
                    "3f2b8c1d-5e6a-4b7c-8d9e-0a1b2c3d4003",
                ),
            ],
        },
        "async-invoke/processor-job.json" => Expect::AsyncJob {
            handler: "processor",
            job_id: "c2a1e6f0-3b5d-4e8a-9f71-2d4c6b8a0e13",
            status: "SUCCEEDED",
        },
        "async-invoke/error-handler-destination-record.json" => Expect::AsyncJob {
            handler: "error-handler",
            job_id: "5f8e2d1c-9b7a-4c3d-8e6f-0a1b2c3d4e5f",
            status: "FAILED",
        },
        "async-invoke/error-handler-replayed-event.json" => Expect::AsyncJob {
            handler: "error-handler",
            job_id: "5f8e2d1c-9b7a-4c3d-8e6f-0a1b2c3d4e5f",
            status: "FAILED",
        },
        "async-invoke/error-handler-replay-of-a-replay.json" => Expect::AsyncJob {
            handler: "error-handler",
            job_id: "5f8e2d1c-9b7a-4c3d-8e6f-0a1b2c3d4e5f",
            status: "FAILED",
        },
        "user-api/authorizer-allow.json" => Expect::RestPolicy("Allow"),
        "user-api/authorizer-wrong-password.json" => Expect::RestPolicy("Deny"),
        "user-api/sqs-create-users.json" => Expect::Users {
            email_race: None,
            failed: &[],
            emails: &["ada@example.com", "grace@example.com"],
            statuses: &[],
        },
        // Nothing is reported for redelivery: whatever a body holds, it gets a terminal answer.
        "user-api/sqs-duplicate-email-and-requests-that-make-no-user.json" => Expect::Users {
            failed: &[],
            emails: &[
                "alan@example.com",
                "last@example.com",
                "producer@example.com",
                USER_API_LONG_EMAIL,
            ],
            email_race: Some((
                "8f2d1e4b-0a3c-4d5e-b6f7-000000000001",
                "8f2d1e4b-0a3c-4d5e-b6f7-000000000002",
            )),
            statuses: &[
                ("8f2d1e4b-0a3c-4d5e-b6f7-000000000003", "INVALID"),
                ("8f2d1e4b-0a3c-4d5e-b6f7-000000000004", "INVALID"),
                ("8f2d1e4b-0a3c-4d5e-b6f7-000000000005", "INVALID"),
            ],
        },
        _ => return None,
    })
}

/// The 254-character email of the user-api sample (242 two-byte characters and a domain).
const USER_API_LONG_EMAIL: &str = "éééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé@example.com";

/// The password the `authorizer-allow` samples carry (`api-user:local-password`).
const SAMPLE_SECRET: &str = r#"{"username":"api-user","password":"local-password"}"#;

fn sample_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read events/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sample_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

/// `events/` of the checkout under test. Cargo sets `CARGO_MANIFEST_DIR` (this crate's folder)
/// when it runs a test, so this is read at run time: `testkit::repo_root()` is fixed when testkit
/// is compiled, and a target directory shared by several checkouts may hold a testkit compiled
/// in another one, whose sample events would then be run instead of these.
fn events_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(|dir| PathBuf::from(dir).join("../../events"))
        .filter(|dir| dir.is_dir())
        .unwrap_or_else(|| testkit::repo_root().join("events"))
}

#[tokio::test]
async fn every_sample_event_runs_through_its_real_handler() {
    let root = events_root();
    let mut files = Vec::new();
    sample_files(&root, &mut files);
    files.sort();
    assert!(
        files.len() >= 5,
        "expected the sample events under {}",
        root.display()
    );

    let sdk = testkit::sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret_arn = secrets
        .create_secret()
        .name(testkit::unique("sample-basic-auth"))
        .secret_string(SAMPLE_SECRET)
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn");
    let authorizer = basic_auth::Authorizer::from_config(
        &basic_auth::Config::from_lookup(|k| (k == "SECRET_ID").then(|| secret_arn.clone()))
            .expect("config"),
        secrets,
    );
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);

    for file in files {
        let relative = file
            .strip_prefix(&root)
            .expect("under events/")
            .to_string_lossy()
            .replace('\\', "/");
        let expect = expectation(&relative).unwrap_or_else(|| {
            panic!("events/{relative} has no expectation in tests/sample_events.rs")
        });
        let text = std::fs::read_to_string(&file).expect("read sample");
        match expect {
            Expect::Authorized(want) => {
                let event: ApiGatewayV2CustomAuthorizerV2Request =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"));
                let answer = authorizer.handle(&event).await.expect("authorizer answers");
                assert_eq!(answer.is_authorized, want, "{relative}");
            }
            Expect::RestPolicy(effect) => {
                let event: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"));
                serde_json::from_value::<
                    aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequestTypeRequest,
                >(event.clone())
                .unwrap_or_else(|e| panic!("{relative} is not a REST authorizer event: {e}"));
                let answer = authorizer
                    .handle_event(event)
                    .await
                    .expect("authorizer answers");
                assert_eq!(
                    answer["policyDocument"]["Statement"][0]["Effect"], effect,
                    "{relative}"
                );
            }
            Expect::Users {
                failed,
                emails,
                statuses,
                email_race,
            } => {
                let event: SqsEvent =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"));
                // The id the client polls (the `requestId` attribute, else the message id) of
                // each message, with the `apiRequestId` attribute it carries.
                let api_request_ids: std::collections::HashMap<String, Option<String>> = event
                    .records
                    .iter()
                    .map(|r| {
                        let attribute = |name: &str| {
                            r.message_attributes
                                .get(name)
                                .and_then(|a| a.string_value.clone())
                        };
                        let polled = attribute("requestId")
                            .or_else(|| r.message_id.clone())
                            .unwrap_or_default();
                        (polled, attribute("apiRequestId"))
                    })
                    .collect();
                assert!(
                    api_request_ids.values().any(Option::is_some),
                    "{relative}: the API's messages carry apiRequestId"
                );
                let table = testkit::create_table(
                    &dynamodb,
                    "sample-users",
                    user_api_consumer::KEY_ATTRIBUTE,
                )
                .await;
                let config = user_api_consumer::Config::from_lookup(|k| {
                    (k == "TABLE_NAME").then(|| table.clone())
                })
                .expect("config");
                let answer = user_api_consumer::Consumer::from_config(&config, dynamodb.clone())
                    .handle(event)
                    .await
                    .expect("consumer answers");
                let got: Vec<_> = answer
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.as_str())
                    .collect();
                assert_eq!(got, failed, "{relative}");
                let items = dynamodb
                    .scan()
                    .table_name(&table)
                    .send()
                    .await
                    .expect("scan")
                    .items()
                    .to_vec();
                let kind = |i: &std::collections::HashMap<
                    String,
                    aws_sdk_dynamodb::types::AttributeValue,
                >| {
                    i.get("kind")
                        .and_then(|k| k.as_s().ok())
                        .cloned()
                        .unwrap_or_default()
                };
                let mut users: Vec<String> = items
                    .iter()
                    .filter(|i| kind(i) == "user")
                    .map(|i| i["email"].as_s().cloned().unwrap_or_default())
                    .collect();
                users.sort();
                let mut emails = emails.to_vec();
                emails.sort();
                assert_eq!(users, emails, "{relative}");
                if let Some((a, b)) = email_race {
                    let taken: Vec<&str> = items
                        .iter()
                        .filter(|i| kind(i) == "status")
                        .filter(|i| {
                            i["state"].as_s().ok().map(String::as_str) == Some("EMAIL_TAKEN")
                        })
                        .filter_map(|i| i["messageId"].as_s().ok().map(String::as_str))
                        .filter(|id| *id == a || *id == b)
                        .collect();
                    assert_eq!(
                        taken.len(),
                        1,
                        "{relative}: one of {a} and {b} loses the email race: {taken:?}"
                    );
                }
                for item in items
                    .iter()
                    .filter(|i| kind(i) == "user" || kind(i) == "status")
                {
                    let polled = item["messageId"].as_s().cloned().unwrap_or_default();
                    let want = api_request_ids
                        .get(&polled)
                        .unwrap_or_else(|| panic!("{relative}: {polled} is no message's"));
                    let have = item
                        .get("apiRequestId")
                        .and_then(|v| v.as_s().ok())
                        .cloned();
                    assert_eq!(&have, want, "{relative}: apiRequestId of {polled}");
                }
                for (message_id, state) in statuses {
                    let status = items
                        .iter()
                        .find(|i| {
                            kind(i) == "status"
                                && i["messageId"].as_s().ok().map(String::as_str)
                                    == Some(*message_id)
                        })
                        .unwrap_or_else(|| panic!("{relative}: no status for {message_id}"));
                    assert_eq!(
                        status["state"].as_s().ok().map(String::as_str),
                        Some(*state),
                        "{relative}"
                    );
                }
            }
            Expect::AsyncJob {
                handler,
                job_id,
                status,
            } => {
                let table = testkit::create_table(
                    &dynamodb,
                    "sample-jobs",
                    async_invoke_jobs::KEY_ATTRIBUTE,
                )
                .await;
                let event: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"));
                if handler == "processor" {
                    let config = async_invoke_processor::Config::from_lookup(|k| {
                        (k == "TABLE_NAME").then(|| table.clone())
                    })
                    .expect("config");
                    let request =
                        serde_json::from_value(event).unwrap_or_else(|e| panic!("{relative}: {e}"));
                    let invocation = async_invoke_processor::Invocation {
                        request_id: "sample-invocation".into(),
                        deadline: None,
                    };
                    async_invoke_processor::Processor::from_config(&config, dynamodb.clone())
                        .handle(request, &invocation)
                        .await
                        .unwrap_or_else(|e| panic!("{relative}: {e}"));
                } else {
                    let config = async_invoke_error_handler::Config::from_lookup(|k| {
                        (k == "TABLE_NAME").then(|| table.clone())
                    })
                    .expect("config");
                    async_invoke_error_handler::ErrorHandler::from_config(
                        &config,
                        dynamodb.clone(),
                    )
                    .handle_event(event)
                    .await
                    .unwrap_or_else(|e| panic!("{relative}: {e}"));
                }
                let item = dynamodb
                    .get_item()
                    .table_name(&table)
                    .key(
                        "jobId",
                        aws_sdk_dynamodb::types::AttributeValue::S(job_id.into()),
                    )
                    .send()
                    .await
                    .expect("get")
                    .item
                    .unwrap_or_else(|| panic!("{relative}: no job {job_id}"));
                assert_eq!(
                    item["status"].as_s().ok().map(String::as_str),
                    Some(status),
                    "{relative}"
                );
                assert_eq!(
                    item.get("apiRequestId")
                        .and_then(|v| v.as_s().ok())
                        .map(String::as_str),
                    Some(job_id),
                    "{relative}: the job id is the API request id"
                );
            }
            Expect::KinesisStream { failed, stored } => {
                // The file is a valid Lambda Kinesis event for the official type too.
                serde_json::from_str::<aws_lambda_events::kinesis::KinesisEvent>(&text)
                    .unwrap_or_else(|e| panic!("{relative} is not a Kinesis event: {e}"));
                let event: batch_consumer::kinesis::KinesisEvent =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"));
                let table = testkit::create_table(
                    &dynamodb,
                    "sample-kinesis",
                    kinesis_stream_consumer::KEY_ATTRIBUTE,
                )
                .await;
                let config = kinesis_stream_consumer::Config::from_lookup(|k| {
                    (k == "TABLE_NAME").then(|| table.clone())
                })
                .expect("config");
                let consumer =
                    kinesis_stream_consumer::Consumer::from_config(&config, dynamodb.clone());
                let answer = consumer.handle(event).await.expect("consumer answers");
                let got: Vec<_> = answer
                    .batch_item_failures
                    .iter()
                    .filter_map(|f| f.item_identifier.as_deref())
                    .collect();
                assert_eq!(got, failed.into_iter().collect::<Vec<_>>(), "{relative}");
                let items = dynamodb
                    .scan()
                    .table_name(&table)
                    .send()
                    .await
                    .expect("scan");
                let mut have: Vec<(String, String, String)> = items
                    .items()
                    .iter()
                    .map(|i| {
                        let s = |k: &str| {
                            i.get(k)
                                .and_then(|v| v.as_s().ok())
                                .cloned()
                                .unwrap_or_default()
                        };
                        (s("eventId"), s("sequenceNumber"), s("apiRequestId"))
                    })
                    .collect();
                have.sort();
                let want: Vec<(String, String, String)> = stored
                    .iter()
                    .map(|(k, s, a)| ((*k).to_owned(), (*s).to_owned(), (*a).to_owned()))
                    .collect();
                assert_eq!(have, want, "{relative}");
            }
            Expect::SqsBuffer { failed, stored } => {
                let event: SqsEvent =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative}: {e}"));
                let table = testkit::create_table(
                    &dynamodb,
                    "sample-events",
                    sqs_buffer_consumer::KEY_ATTRIBUTE,
                )
                .await;
                let config = sqs_buffer_consumer::Config::from_lookup(|k| {
                    (k == "TABLE_NAME").then(|| table.clone())
                })
                .expect("config");
                let consumer =
                    sqs_buffer_consumer::Consumer::from_config(&config, dynamodb.clone());
                let answer = consumer.handle(event).await.expect("consumer answers");
                let got: Vec<_> = answer
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.as_str())
                    .collect();
                assert_eq!(got, failed, "{relative}");
                let mut have: Vec<(String, String)> = dynamodb
                    .scan()
                    .table_name(&table)
                    .send()
                    .await
                    .expect("scan")
                    .items()
                    .iter()
                    .map(|i| {
                        let s = |k: &str| {
                            i.get(k)
                                .and_then(|v| v.as_s().ok())
                                .cloned()
                                .unwrap_or_default()
                        };
                        (s("eventId"), s("apiRequestId"))
                    })
                    .collect();
                have.sort();
                let want: Vec<(String, String)> = stored
                    .iter()
                    .map(|(k, a)| ((*k).to_owned(), (*a).to_owned()))
                    .collect();
                assert_eq!(have, want, "{relative}");
            }
        }
    }
}
