//! Redrive against a real SQS API (moto), with the real SDK client.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use aws_sdk_sqs::types::QueueAttributeName;

async fn queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    redrive_to: Option<&str>,
) -> (String, String) {
    let mut request = sqs.create_queue().queue_name(testkit::unique(name));
    if let Some(dlq_arn) = redrive_to {
        let policy =
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}).to_string();
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy);
    }
    let url = request
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("url");
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes");
    let arn = attrs.attributes().expect("attributes")[&QueueAttributeName::QueueArn].clone();
    (url, arn)
}

async fn bodies(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let out = sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .send()
        .await
        .expect("receive");
    let mut bodies: Vec<String> = out
        .messages()
        .iter()
        .filter_map(|m| m.body().map(str::to_owned))
        .collect();
    bodies.sort();
    bodies
}

#[tokio::test]
async fn redrive_moves_every_dead_lettered_message_back_to_its_source_queue() {
    let sqs = aws_sdk_sqs::Client::new(&testkit::sdk_config().await);
    let (dlq_url, dlq_arn) = queue(&sqs, "dlq", None).await;
    let (source_url, _) = queue(&sqs, "source", Some(&dlq_arn)).await;
    for body in ["a", "b", "c"] {
        sqs.send_message()
            .queue_url(&dlq_url)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }

    assert_eq!(
        sqs_redrive::source_queue_of(&sqs, &dlq_url)
            .await
            .expect("source"),
        source_url
    );
    let moved = sqs_redrive::redrive(&sqs, &dlq_url, &source_url, None)
        .await
        .expect("redrive");

    assert_eq!(moved, 3);
    assert!(bodies(&sqs, &dlq_url).await.is_empty(), "the DLQ is empty");
    assert_eq!(bodies(&sqs, &source_url).await, ["a", "b", "c"]);
}

#[tokio::test]
async fn redrive_respects_max_and_refuses_a_queue_nobody_dead_letters_to() {
    let sqs = aws_sdk_sqs::Client::new(&testkit::sdk_config().await);
    let (dlq_url, dlq_arn) = queue(&sqs, "dlq", None).await;
    let (source_url, _) = queue(&sqs, "source", Some(&dlq_arn)).await;
    for body in ["1", "2", "3"] {
        sqs.send_message()
            .queue_url(&dlq_url)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }
    let moved = sqs_redrive::redrive(&sqs, &dlq_url, &source_url, Some(2))
        .await
        .expect("redrive");
    assert_eq!(moved, 2);

    let (orphan_url, _) = queue(&sqs, "orphan", None).await;
    let error = sqs_redrive::source_queue_of(&sqs, &orphan_url)
        .await
        .expect_err("no source queue");
    assert!(error.to_string().contains("pass --to"), "{error}");
}

#[tokio::test]
async fn redrive_keeps_each_messages_attributes_and_gives_it_a_new_message_id() {
    use aws_sdk_sqs::types::MessageAttributeValue;
    let sqs = aws_sdk_sqs::Client::new(&testkit::sdk_config().await);
    let (dlq_url, dlq_arn) = queue(&sqs, "dlq", None).await;
    let (source_url, _) = queue(&sqs, "source", Some(&dlq_arn)).await;
    let attribute = |value: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .expect("attribute")
    };
    let sent = sqs
        .send_message()
        .queue_url(&dlq_url)
        .message_body("{}")
        .message_attributes("requestId", attribute("req-1"))
        .message_attributes("other", attribute("kept too"))
        .send()
        .await
        .expect("send");

    let moved = sqs_redrive::redrive(&sqs, &dlq_url, &source_url, None)
        .await
        .expect("redrive");
    assert_eq!(moved, 1);

    let received = sqs
        .receive_message()
        .queue_url(&source_url)
        .message_attribute_names("All")
        .send()
        .await
        .expect("receive");
    let message = &received.messages()[0];
    let attributes = message.message_attributes().expect("attributes");
    assert_eq!(attributes["requestId"].string_value(), Some("req-1"));
    assert_eq!(attributes["requestId"].data_type(), "String");
    assert_eq!(attributes["other"].string_value(), Some("kept too"));
    assert_ne!(
        message.message_id(),
        sent.message_id(),
        "a redriven message is a new message: only its attributes can carry an id across"
    );
}
