//! The mapping-template helper pool: each render gets its own answer, whatever other callers do
//! (finish, give up half-way, stall), and a helper process that dies is replaced.
//!
//! Regression tests for issue 11: one helper behind one pipe gave a disconnected client's answer
//! to the next caller, was never restarted, and let one slow template hold every REST call.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a broken fixture should fail the test loudly

use std::time::Duration;

use local_gateway::apigw::helper::Helper;
use serde_json::json;

async fn helper(limit: Duration) -> Helper {
    let python = testkit::repo_root().join(".venv/bin/python");
    Helper::with_limit(python.to_str().expect("path"), limit)
        .await
        .expect("helper")
}

async fn echo(helper: &Helper, body: &str) -> String {
    helper
        .render("$input.body", body, &json!({}), &json!({}))
        .await
        .expect("render")
        .output
}

/// Generous: a render of `$input.body` takes milliseconds; this bound only decides how long a
/// broken run takes to fail, and is what a stalled render is allowed before it is given up.
const LIMIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn every_render_gets_its_own_answer_while_other_callers_give_up_half_way() {
    let helper = std::sync::Arc::new(helper(LIMIT).await);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let helper = helper.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("caller-{i}");
            if i % 3 == 0 {
                // A client that disconnects: its render is dropped while it may be in flight.
                let _ = tokio::time::timeout(Duration::from_micros(50), echo(&helper, &body)).await;
                None
            } else {
                Some((body.clone(), echo(&helper, &body).await))
            }
        }));
    }
    let mut answered = 0;
    for task in tasks {
        if let Some((asked, got)) = task.await.expect("task") {
            assert_eq!(got, asked, "an answer reached another caller");
            answered += 1;
        }
    }
    assert_eq!(answered, 40);
    // Afterwards, nothing left in any pipe reaches a new caller.
    for i in 0..10 {
        assert_eq!(
            echo(&helper, &format!("after-{i}")).await,
            format!("after-{i}")
        );
    }
}

#[tokio::test]
async fn a_helper_process_that_died_while_idle_is_never_handed_a_render() {
    let helper = helper(LIMIT).await;
    assert_eq!(echo(&helper, "before").await, "before");
    let pids = helper.idle_pids();
    assert!(!pids.is_empty(), "a process is kept for the next render");
    for pid in &pids {
        let status = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
    // Once the killed processes are dead (zombies until reaped, or gone), the next render is
    // not handed one of them: it gets a new process and succeeds at once.
    for pid in &pids {
        testkit::eventually(
            "the helper process dead",
            Duration::from_secs(30),
            || async {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().next());
                matches!(state, None | Some("Z") | Some("X")).then_some(())
            },
        )
        .await;
    }
    let answer = helper
        .render("$input.body", "again", &json!({}), &json!({}))
        .await;
    assert_eq!(answer.expect("a new process renders").output, "again");
}

#[tokio::test]
async fn a_stalled_render_fails_alone_at_its_limit_while_others_go_on() {
    // Eight billion iterations: far longer than the limit on any machine.
    let stall =
        "#foreach($a in [1..2000])#foreach($b in [1..2000])#foreach($c in [1..2000])#end#end#end";
    // Ten seconds: a trivial render, the others here, takes milliseconds even on a loaded machine.
    let helper = std::sync::Arc::new(helper(Duration::from_secs(10)).await);
    let stalled = {
        let helper = helper.clone();
        tokio::spawn(async move { helper.render(stall, "", &json!({}), &json!({})).await })
    };
    testkit::eventually("the stalled render in flight", LIMIT, || async {
        (helper.in_use() == 1).then_some(())
    })
    .await;
    // While it stalls, other renders are served by the pool's other processes.
    for i in 0..5 {
        assert_eq!(
            echo(&helper, &format!("meanwhile-{i}")).await,
            format!("meanwhile-{i}")
        );
    }
    let error = stalled
        .await
        .expect("task")
        .expect_err("the stalled render fails");
    assert!(format!("{error:#}").contains("did not finish"), "{error:#}");
    assert_eq!(echo(&helper, "after").await, "after");
}
