//! `/api/jobs`, `/api/crons` and `backbone jobs`: every state transition seen from outside,
//! retries and backoff, dead + replay, cancel of a running job, timeouts, unique keys,
//! priorities, concurrency limits, cron runs, orphans after SIGKILL, and bad input.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{command, Reply, Server, StartOptions};

fn test_kinds() -> StartOptions {
    StartOptions {
        env: vec![
            ("BACKBONE_JOBS_TEST_KINDS".into(), "true".into()),
            ("BACKBONE_JOBS_BACKOFF_BASE_MS".into(), "150".into()),
        ],
        args: vec![],
    }
}

async fn enqueue(s: &Server, t: &str, body: Value) -> Reply {
    s.call("POST", "/api/jobs", Some(t), Some(body)).await
}

async fn enqueue_id(s: &Server, t: &str, body: Value) -> String {
    let r = enqueue(s, t, body).await;
    assert_eq!(r.status, 202, "{}", r.text);
    r.body["id"].as_str().expect("id").to_string()
}

/// Polls the job until `done` holds (or fails after `within`).
async fn wait_job(s: &Server, t: &str, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let r = s.call("GET", &format!("/api/jobs/{id}"), Some(t), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if done(&r.body) {
            return r.body;
        }
        assert!(
            started.elapsed() < crate::common::patient(within),
            "job {id} did not reach the expected state: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn state_is(state: &'static str) -> impl Fn(&Value) -> bool {
    move |job: &Value| job["state"] == state
}

fn time_ms(value: &Value) -> i64 {
    let text = value.as_str().expect("a time");
    let t = chrono::NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), "%Y-%m-%d %H:%M:%S%.3f")
        .expect(text);
    t.and_utc().timestamp_millis()
}

#[tokio::test]
async fn a_job_is_accepted_with_location_runs_and_is_listed_filtered_and_counted() {
    let s = Server::start_with(test_kinds());
    let t = s.setup_superuser().await;
    let r = enqueue(&s, &t, json!({"kind": "noop", "payload": {"hello": "world"}, "queue": "mail"})).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_string();
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/api/jobs/{id}").as_str())
    );
    assert_eq!(r.body["state"], "available");
    let job = wait_job(&s, &t, &id, Duration::from_secs(5), state_is("completed")).await;
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["payload"], json!({"hello": "world"}));
    assert!(job["finishedAt"].is_string() && job["startedAt"].is_string());
    // A delayed job is scheduled and not run early.
    let later = enqueue_id(&s, &t, json!({"kind": "noop", "delayMs": 60000})).await;
    let r = s.call("GET", &format!("/api/jobs/{later}"), Some(&t), None).await;
    assert_eq!(r.body["state"], "scheduled");
    // Filters.
    let r = s.call("GET", "/api/jobs?state=completed&queue=mail&kind=noop", Some(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["totalItems"], 1);
    assert_eq!(r.body["items"][0]["id"], id.as_str());
    let r = s.call("GET", "/api/jobs?queue=nope", Some(&t), None).await;
    assert_eq!(r.body["totalItems"], 0);
    let r = s.call("GET", "/api/jobs?perPage=1&page=2", Some(&t), None).await;
    assert_eq!((r.body["totalItems"].as_u64(), r.body["items"].as_array().map(Vec::len)), (Some(2), Some(1)));
    assert_eq!(r.body["items"][0]["id"], id.as_str(), "newest first: page 2 holds the older job");
    // Stats.
    let r = s.call("GET", "/api/jobs/stats", Some(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["states"]["completed"], 1);
    assert_eq!(r.body["states"]["scheduled"], 1);
    assert_eq!(r.body["queues"]["mail"]["states"]["completed"], 1);
    assert_eq!(r.body["total"], 2);
    // Delete.
    let r = s.call("DELETE", &format!("/api/jobs/{id}"), Some(&t), None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    s.call("GET", &format!("/api/jobs/{id}"), Some(&t), None).await.assert_problem(404);
}

#[tokio::test]
async fn failing_jobs_retry_with_growing_delays_then_die_and_can_be_replayed() {
    let s = Server::start_with(test_kinds());
    let t = s.setup_superuser().await;
    // Succeeds on its second attempt: available → running → retrying → running → completed.
    let flaky = enqueue_id(&s, &t, json!({"kind": "fail", "payload": {"succeedAt": 2}})).await;
    let job = wait_job(&s, &t, &flaky, Duration::from_secs(5), state_is("completed")).await;
    assert_eq!(job["attempt"], 2);
    assert_eq!(job["errors"].as_array().map(Vec::len), Some(1));

    let id =
        enqueue_id(&s, &t, json!({"kind": "fail", "maxAttempts": 4, "payload": {"message": "nope"}})).await;
    let job = wait_job(&s, &t, &id, Duration::from_secs(10), state_is("dead")).await;
    assert_eq!(job["attempt"], 4);
    assert_eq!(job["lastError"], "nope");
    let at: Vec<i64> = job["errors"].as_array().expect("errors").iter().map(|e| time_ms(&e["at"])).collect();
    assert_eq!(at.len(), 4);
    // Base 150 ms, doubling: the gaps are at least 150, 300, 600 ms and at most ~10 % more
    // (plus scheduling slack).
    for (i, pair) in at.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let min = 150 << i;
        assert!(gap >= min && gap <= min * 11 / 10 + 250, "gap {i}: {gap} ms (expected ≥ {min})");
    }
    // Replay: attempts start over and it dies again.
    let r = s.call("POST", &format!("/api/jobs/{id}/retry"), Some(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["attempt"], 0);
    let job =
        wait_job(&s, &t, &id, Duration::from_secs(10), |j| j["state"] == "dead" && j["attempt"] == 4).await;
    assert!(job["errors"].as_array().map_or(0, Vec::len) >= 5, "earlier errors are kept");
    // A discarded failure dies at once.
    let d = enqueue_id(&s, &t, json!({"kind": "fail", "payload": {"discard": true}})).await;
    let job = wait_job(&s, &t, &d, Duration::from_secs(5), state_is("dead")).await;
    assert_eq!(job["attempt"], 1);
}

#[tokio::test]
async fn a_running_job_sees_cancellation_reports_progress_and_times_out() {
    let s = Server::start_with(test_kinds());
    let t = s.setup_superuser().await;
    let id = enqueue_id(&s, &t, json!({"kind": "sleep", "payload": {"ms": 20000}})).await;
    let job = wait_job(&s, &t, &id, Duration::from_secs(5), |j| {
        j["state"] == "running" && !j["progress"].is_null()
    })
    .await;
    assert!(job["progress"].as_u64().is_some_and(|p| p > 0 && p < 100), "{job}");
    s.call("POST", &format!("/api/jobs/{id}/retry"), Some(&t), None).await.assert_problem(409);
    s.call("DELETE", &format!("/api/jobs/{id}"), Some(&t), None).await.assert_problem(409);
    let started = Instant::now();
    let r = s.call("POST", &format!("/api/jobs/{id}/cancel"), Some(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["cancelRequested"], true);
    let job = wait_job(&s, &t, &id, Duration::from_secs(5), state_is("cancelled")).await;
    assert!(started.elapsed() < Duration::from_secs(3), "the handler stopped promptly");
    assert!(job["lastError"].as_str().unwrap_or_default().contains("cancel"), "{job}");
    s.call("POST", &format!("/api/jobs/{id}/cancel"), Some(&t), None).await.assert_problem(409);
    // A waiting job is cancelled at once.
    let w = enqueue_id(&s, &t, json!({"kind": "noop", "delayMs": 60000})).await;
    let r = s.call("POST", &format!("/api/jobs/{w}/cancel"), Some(&t), None).await;
    assert_eq!(r.body["state"], "cancelled");
    // Timeout: the attempt fails with a timeout error.
    let slow = enqueue_id(
        &s,
        &t,
        json!({"kind": "sleep", "payload": {"ms": 20000}, "timeoutMs": 200, "maxAttempts": 1}),
    )
    .await;
    let job = wait_job(&s, &t, &slow, Duration::from_secs(5), state_is("dead")).await;
    assert!(job["lastError"].as_str().unwrap_or_default().contains("timed out"), "{job}");
    // Snooze: the first attempt asks to run later; the second completes.
    let z = enqueue_id(
        &s,
        &t,
        json!({"kind": "sleep", "payload": {"ms": 10, "snoozeMs": 300}, "maxAttempts": 1}),
    )
    .await;
    let job = wait_job(&s, &t, &z, Duration::from_secs(5), |j| {
        j["state"] == "scheduled" || j["state"] == "completed"
    })
    .await;
    assert_eq!(job["state"], "scheduled", "{job}");
    let job = wait_job(&s, &t, &z, Duration::from_secs(5), state_is("completed")).await;
    assert_eq!((job["attempt"].as_u64(), job["maxAttempts"].as_u64()), (Some(2), Some(2)));
}

#[tokio::test]
async fn unique_keys_return_the_existing_job_until_it_finishes() {
    let s = Server::start_with(test_kinds());
    let t = s.setup_superuser().await;
    let body = json!({"kind": "noop", "uniqueKey": "digest:7", "delayMs": 60000});
    let first = enqueue_id(&s, &t, body.clone()).await;
    let r = enqueue(&s, &t, body.clone()).await;
    assert_eq!(r.status, 200, "a duplicate is not a new job: {}", r.text);
    assert_eq!(r.body["id"], first.as_str());
    s.call("POST", &format!("/api/jobs/{first}/cancel"), Some(&t), None).await;
    let second = enqueue_id(&s, &t, body).await;
    assert_ne!(second, first);
    s.call("POST", &format!("/api/jobs/{first}/retry"), Some(&t), None).await.assert_problem(409);
}

#[tokio::test]
async fn priorities_order_a_queue_and_its_concurrency_limit_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("backbone.toml"),
        "[jobs]\ntest_kinds = true\n[jobs.queues]\ndefault = 10\nsolo = 1\npair = 2\n",
    )
    .expect("config");
    let s = Server::start_in(dir.path(), StartOptions::default());
    let t = s.setup_superuser().await;
    // Occupy the single slot, then queue jobs of mixed priority behind it.
    let blocker = enqueue_id(&s, &t, json!({"kind": "sleep", "queue": "solo", "payload": {"ms": 400}})).await;
    wait_job(&s, &t, &blocker, Duration::from_secs(5), state_is("running")).await;
    let mut ids = Vec::new();
    for priority in [5, 0, 9, 0, 3] {
        let id = enqueue_id(
            &s,
            &t,
            json!({"kind": "sleep", "queue": "solo", "priority": priority, "payload": {"ms": 30}}),
        )
        .await;
        ids.push((priority, id));
    }
    let mut runs = Vec::new();
    for (priority, id) in &ids {
        let job = wait_job(&s, &t, id, Duration::from_secs(10), state_is("completed")).await;
        runs.push((time_ms(&job["startedAt"]), time_ms(&job["finishedAt"]), *priority, id.clone()));
    }
    runs.sort();
    let order: Vec<i32> = runs.iter().map(|r| r.2).collect();
    assert_eq!(order, vec![0, 0, 3, 5, 9], "lower priority numbers run first");
    assert!(runs[0].3 < runs[1].3, "equal priorities run in enqueue order");
    // Each handler sleeps at least 30 ms, so with one slot consecutive starts are ≥ 30 ms
    // apart (finishedAt is when the completion was written, after the slot was freed).
    for pair in runs.windows(2) {
        assert!(pair[1].0 >= pair[0].0 + 30, "concurrency 1: runs must not overlap: {runs:?}");
    }
    // A queue with two slots runs two at a time, never three.
    let mut pair_ids = Vec::new();
    for _ in 0..6 {
        pair_ids.push(
            enqueue_id(&s, &t, json!({"kind": "sleep", "queue": "pair", "payload": {"ms": 200}})).await,
        );
    }
    let mut spans = Vec::new();
    for id in &pair_ids {
        let job = wait_job(&s, &t, id, Duration::from_secs(10), state_is("completed")).await;
        spans.push((time_ms(&job["startedAt"]), time_ms(&job["finishedAt"])));
    }
    // Each handler sleeps ≥ 200 ms: the jobs started within 200 ms before a start all ran
    // at that moment.
    let max_overlap = spans
        .iter()
        .map(|(start, _)| spans.iter().filter(|(a, _)| a <= start && *start < a + 200).count())
        .max()
        .unwrap_or(0);
    assert_eq!(max_overlap, 2, "two slots are used and never exceeded: {spans:?}");
}

#[tokio::test]
async fn crons_fire_on_schedule_keep_history_run_now_and_disable() {
    let s = Server::start_with(test_kinds());
    let t = s.setup_superuser().await;
    let r = s
        .call("POST", "/api/crons", Some(&t), Some(json!({"name": "tick", "expression": "* * * * * *", "kind": "noop", "payload": {"from": "cron"}})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_string();
    assert!(r.body["nextRunAt"].is_string());
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let r = s.call("GET", &format!("/api/crons/{id}/runs"), Some(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let runs = r.body["items"].as_array().expect("items").clone();
    assert!((2..=3).contains(&runs.len()), "one run per second: {}", r.text);
    let mut slots: Vec<&str> = runs.iter().map(|r| r["scheduledFor"].as_str().unwrap_or_default()).collect();
    slots.dedup();
    assert_eq!(slots.len(), runs.len(), "no occurrence fired twice");
    let job_id = runs[0]["jobId"].as_str().expect("job id");
    let job = wait_job(&s, &t, job_id, Duration::from_secs(5), state_is("completed")).await;
    assert_eq!(job["payload"], json!({"from": "cron"}));
    // Disable: no more runs.
    let r = s.call("PATCH", &format!("/api/crons/{id}"), Some(&t), Some(json!({"enabled": false}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body["nextRunAt"].is_null());
    let before =
        s.call("GET", &format!("/api/crons/{id}/runs"), Some(&t), None).await.body["totalItems"].clone();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after =
        s.call("GET", &format!("/api/crons/{id}/runs"), Some(&t), None).await.body["totalItems"].clone();
    assert_eq!(before, after, "a disabled schedule does not fire");
    // Run now.
    let r = s.call("POST", &format!("/api/crons/{id}/run"), Some(&t), None).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let location = r.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(location.starts_with("/api/jobs/"), "{location}");
    let r = s.call("GET", &format!("/api/crons/{id}/runs?perPage=1"), Some(&t), None).await;
    assert_eq!(r.body["items"][0]["manual"], true);
    // List, view, delete.
    let r = s.call("GET", "/api/crons", Some(&t), None).await;
    assert!(
        r.body
            .as_array()
            .is_some_and(|a| a.iter().all(|c| c["id"].is_string() && c["expression"].is_string())),
        "PocketBase's shape: an array of {{id, expression}}: {}",
        r.text
    );
    let kinds: Vec<&str> =
        r.body.as_array().map(|a| a.iter().filter_map(|c| c["kind"].as_str()).collect()).unwrap_or_default();
    assert_eq!(kinds.len(), 2, "this schedule and the built-in daily files.sweep: {}", r.text);
    assert!(kinds.contains(&"files.sweep"), "{}", r.text);
    let r = s.call("DELETE", &format!("/api/crons/{id}"), Some(&t), None).await;
    assert_eq!(r.status, 204);
    s.call("GET", &format!("/api/crons/{id}"), Some(&t), None).await.assert_problem(404);
}

#[tokio::test]
async fn orphaned_running_jobs_are_requeued_at_restart_and_run_within_a_second() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start_in(dir.path(), test_kinds());
    let t = s.setup_superuser().await;
    let id = enqueue_id(&s, &t, json!({"kind": "sleep", "payload": {"ms": 60000}})).await;
    wait_job(&s, &t, &id, Duration::from_secs(5), state_is("running")).await;
    s.kill9();
    let restarted = Instant::now();
    let s = Server::start_in(dir.path(), test_kinds());
    let t = s.login().await;
    let job =
        wait_job(&s, &t, &id, Duration::from_secs(5), |j| j["state"] == "running" && j["attempt"] == 2).await;
    let elapsed = restarted.elapsed();
    assert!(elapsed < Duration::from_secs(3), "orphan running again {elapsed:?} after the restart");
    assert!(job["errors"][0]["error"].as_str().unwrap_or_default().contains("orphaned"), "{job}");
    println!("orphan running again {elapsed:?} after the restart (including process start and sign-in)");
}

#[tokio::test]
async fn jobs_endpoints_refuse_bad_input_with_problem_json() {
    let s = Server::start_with(test_kinds());
    let t = s.setup_superuser().await;
    s.call("GET", "/api/jobs", None, None).await.assert_problem(401);
    s.call("POST", "/api/jobs", None, Some(json!({"kind": "noop"}))).await.assert_problem(401);
    s.call("GET", "/api/crons", None, None).await.assert_problem(401);
    s.call("GET", "/api/jobs/stats", Some("not-a-token"), None).await.assert_problem(401);
    for (body, field) in [
        (json!({}), "kind"),
        (json!({"kind": "no.such.kind"}), "kind"),
        (json!({"kind": "noop", "priority": 10}), "priority"),
        (json!({"kind": "noop", "priority": "high"}), "priority"),
        (json!({"kind": "noop", "queue": "has space"}), "queue"),
        (json!({"kind": "noop", "maxAttempts": 0}), "maxAttempts"),
        (json!({"kind": "noop", "runAt": "yesterday-ish"}), "runAt"),
        (json!({"kind": "noop", "runAt": "2030-01-01", "delayMs": 5}), "runAt"),
        (json!({"kind": "noop", "surprise": 1}), "surprise"),
        (json!({"kind": "noop", "uniqueKey": 5}), "uniqueKey"),
        (json!({"kind": "noop", "timeoutMs": 0}), "timeoutMs"),
    ] {
        enqueue(&s, &t, body.clone())
            .await
            .assert_problem(400)
            .assert_field_error(field, &field_code(&body, field));
    }
    s.raw("POST", "/api/jobs", Some(&t), Some("text/plain"), b"kind=noop".to_vec()).await.assert_problem(415);
    s.raw("POST", "/api/jobs", Some(&t), Some("application/json"), b"{not json".to_vec())
        .await
        .assert_problem(400);
    s.raw("POST", "/api/jobs", Some(&t), Some("application/json"), b"[1]".to_vec()).await.assert_problem(400);
    s.call("GET", "/api/jobs?state=sleeping", Some(&t), None).await.assert_problem(400);
    s.call("GET", "/api/jobs?page=0", Some(&t), None).await.assert_problem(400);
    s.call("GET", "/api/jobs?perPage=x", Some(&t), None).await.assert_problem(400);
    s.call("GET", "/api/jobs/12345", Some(&t), None).await.assert_problem(404);
    s.call("GET", "/api/jobs/not-a-number", Some(&t), None).await.assert_problem(404);
    s.call("POST", "/api/jobs/12345/retry", Some(&t), None).await.assert_problem(404);
    s.call("POST", "/api/jobs/12345/cancel", Some(&t), None).await.assert_problem(404);
    s.call("DELETE", "/api/jobs/12345", Some(&t), None).await.assert_problem(404);
    s.call("PUT", "/api/jobs/12345", Some(&t), None).await.assert_problem(405);
    for (body, field) in [
        (json!({"expression": "* * * * *", "kind": "noop"}), "name"),
        (json!({"name": "x", "kind": "noop"}), "expression"),
        (json!({"name": "x", "expression": "* * * *", "kind": "noop"}), "expression"),
        (json!({"name": "x", "expression": "0 0 0 1 1 * 2030", "kind": "noop"}), "expression"),
        (json!({"name": "x", "expression": "99 * * * *", "kind": "noop"}), "expression"),
        (json!({"name": "x", "expression": "* * * * *", "kind": "nope"}), "kind"),
        (json!({"name": "x", "expression": "* * * * *", "kind": "noop", "enabled": "yes"}), "enabled"),
        (json!({"name": "x", "expression": "* * * * *", "kind": "noop", "priority": 12}), "priority"),
        (json!({"name": "x", "expression": "* * * * *", "kind": "noop", "cron": 1}), "cron"),
    ] {
        let r = s.call("POST", "/api/crons", Some(&t), Some(body.clone())).await;
        r.assert_problem(400);
        assert!(r.body["data"][field].is_object(), "{field}: {}", r.text);
    }
    s.call("GET", "/api/crons/missing", Some(&t), None).await.assert_problem(404);
    s.call("PATCH", "/api/crons/missing", Some(&t), Some(json!({"enabled": true}))).await.assert_problem(404);
    s.call("DELETE", "/api/crons/missing", Some(&t), None).await.assert_problem(404);
    s.call("POST", "/api/crons/missing/run", Some(&t), None).await.assert_problem(404);
    s.call("GET", "/api/crons/missing/runs", Some(&t), None).await.assert_problem(404);
    let r = s
        .call(
            "POST",
            "/api/crons",
            Some(&t),
            Some(json!({"name": "x", "expression": "0 0 * * *", "kind": "noop"})),
        )
        .await;
    let id = r.body["id"].as_str().expect("id").to_string();
    s.call("PATCH", &format!("/api/crons/{id}"), Some(&t), Some(json!({"expression": "nope"})))
        .await
        .assert_problem(400);
    s.call("GET", &format!("/api/crons/{id}/runs?page=-1"), Some(&t), None).await.assert_problem(400);
}

/// The error code each bad enqueue field is expected to carry.
fn field_code(body: &Value, field: &str) -> String {
    match field {
        "kind" if body.get("kind").is_none() => "validation_required",
        "kind" => "validation_unknown_kind",
        "queue" => "validation_invalid_queue",
        "runAt" if body.get("delayMs").is_some() => "validation_conflict",
        "runAt" => "validation_invalid_date",
        "surprise" => "validation_unknown_field",
        "uniqueKey" => "validation_invalid_type",
        _ => "validation_invalid_number",
    }
    .to_string()
}

fn jobs_cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    command()
        .arg("jobs")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env("BACKBONE_JOBS_TEST_KINDS", "true")
        .output()
        .expect("run")
}

#[tokio::test]
async fn cli_jobs_list_retry_and_cancel_work_with_and_without_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start_in(dir.path(), test_kinds());
    let t = s.setup_superuser().await;
    let dead = enqueue_id(&s, &t, json!({"kind": "fail", "maxAttempts": 1})).await;
    wait_job(&s, &t, &dead, Duration::from_secs(5), state_is("dead")).await;
    let waiting = enqueue_id(&s, &t, json!({"kind": "noop", "delayMs": 600000})).await;
    // Online: through the admin socket.
    let out = jobs_cli(dir.path(), &["list", "--state", "dead"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains(&dead) && !text.contains(&waiting), "{text}");
    let out = jobs_cli(dir.path(), &["retry", &dead]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_job(&s, &t, &dead, Duration::from_secs(5), |j| {
        j["state"] == "dead" && j["errors"].as_array().map_or(0, Vec::len) == 2
    })
    .await;
    let out = jobs_cli(dir.path(), &["cancel", "999"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("wasn't found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Offline: on the file directly.
    assert_eq!(s.terminate(), Some(0));
    let out = jobs_cli(dir.path(), &["cancel", &waiting]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("cancelled"));
    let out = jobs_cli(dir.path(), &["list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page: Value = serde_json::from_slice(&out.stdout).expect("json");
    let states: Vec<(&str, &str)> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|j| (j["id"].as_str().unwrap_or(""), j["state"].as_str().unwrap_or("")))
        .collect();
    assert!(states.contains(&(waiting.as_str(), "cancelled")), "{states:?}");
    assert!(states.contains(&(dead.as_str(), "dead")), "{states:?}");
    let out = jobs_cli(dir.path(), &["list", "--state", "bogus"]);
    assert!(!out.status.success());
}
