//! Alert notifications by webhook, against a real HTTP receiver on loopback
//! (`tests/common/webhook_sink.rs`): one signed POST per firing and per resolve (signatures
//! checked with Python's `hmac`), the cooldown, retries with one delivery id, final
//! failures, and the target policy when a rule is saved and when a delivery is sent.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::webhook_sink::{verify_with_python, Received, WebhookSink};
use crate::common::{dead_job, wait_alert_history, Server, StartOptions};

fn env(extra: &[(&str, &str)]) -> StartOptions {
    let mut env = vec![
        ("BACKBONE_JOBS_TEST_KINDS".to_string(), "true".to_string()),
        ("BACKBONE_OBSERVE_HISTORY_SAMPLE_SECS".to_string(), "1".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    StartOptions { env, args: vec![] }
}

/// Private targets allowed: the receiver is on 127.0.0.1.
fn loopback_allowed(extra: &[(&str, &str)]) -> StartOptions {
    let mut options = env(&[("BACKBONE_WEBHOOKS_ALLOW_PRIVATE_TARGETS", "true")]);
    options.env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    options
}

/// A rule on `jobs_dead > 0` that fires at once and notifies `webhooks`.
async fn dead_jobs_rule(s: &Server, su: &str, extra: Value) -> Value {
    let mut body = json!({"name": "Dead jobs (webhook test)", "series": "jobs_dead", "op": ">", "threshold": 0,
                          "forSecs": 0, "cooldownSecs": 3600});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    let created = s.call("POST", "/api/alerts", Some(su), Some(body)).await;
    assert_eq!(created.status, 200, "{}", created.text);
    created.body
}

/// Asserts the delivery headers and the signature; returns the signed timestamp.
#[track_caller]
fn assert_signed(request: &Received, secret: &str, event: &str) -> i64 {
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("content-type"), "application/json");
    assert!(request.header("user-agent").starts_with("Backbone/"), "{:?}", request.headers);
    assert_eq!(request.header("x-backbone-event"), event);
    assert!(request.header("x-backbone-delivery").starts_with("whd_"), "{:?}", request.headers);
    let header = request.header("x-backbone-signature");
    let t = verify_with_python(secret, header, &request.body)
        .unwrap_or_else(|| panic!("signature {header:?} does not verify over {:?}", request.json()));
    let now = chrono::Utc::now().timestamp();
    assert!((now - t).abs() < 300, "the signed timestamp {t} is the send time (now {now})");
    assert!(verify_with_python("whsec_wrong_secret_0123456789", header, &request.body).is_none());
    t
}

async fn webhook_jobs(s: &Server, su: &str) -> Vec<Value> {
    let r = s.call("GET", "/api/jobs?kind=webhooks.deliver&perPage=100", Some(su), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["items"].as_array().cloned().unwrap_or_default()
}

/// Polls the `webhooks.deliver` jobs until `done` says they are as expected.
async fn wait_jobs(s: &Server, su: &str, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let jobs = webhook_jobs(s, su).await;
        if done(&jobs) {
            return jobs;
        }
        assert!(started.elapsed() < crate::common::patient(within), "webhook jobs never got there: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_alert_posts_one_signed_firing_and_one_resolved_webhook_and_the_cooldown_holds_back_the_next() {
    let sink = WebhookSink::start().await;
    let s = Server::start_with(loopback_allowed(&[]));
    let su = s.setup_superuser().await;
    let created = dead_jobs_rule(&s, &su, json!({"webhooks": [sink.url("/alerts?source=backbone")]})).await;
    let rule = created["id"].as_str().expect("rule id").to_string();
    // The server generated the secret: shown once, in this answer, then only as a hint.
    let secret = created["webhookSecret"].as_str().expect("a generated secret").to_string();
    assert!(secret.starts_with("whsec_") && secret.len() >= 32, "{secret}");
    let tail: String = secret.chars().skip(secret.len() - 4).collect();
    assert_eq!(created["webhookSecretHint"], format!("…{tail}"));
    let shown = s.call("GET", &format!("/api/alerts/{rule}"), Some(&su), None).await;
    assert!(shown.body.get("webhookSecret").is_none() && !shown.text.contains(&secret), "{}", shown.text);
    assert_eq!(shown.body["webhooks"], json!([sink.url("/alerts?source=backbone")]));

    // Firing: exactly one signed POST.
    let first_dead = dead_job(&s, &su).await;
    let got = sink.wait_for(1, Duration::from_secs(15)).await;
    let firing = &got[0];
    assert_eq!(firing.path, "/alerts");
    assert_signed(firing, &secret, "alert.firing");
    let body = firing.json();
    assert_eq!(body["event"], "alert.firing");
    assert_eq!(body["rule"]["id"], rule.as_str());
    assert_eq!(body["rule"]["name"], "Dead jobs (webhook test)");
    assert_eq!(
        (&body["rule"]["series"], &body["rule"]["op"], &body["rule"]["threshold"], &body["rule"]["forSecs"]),
        (&json!("jobs_dead"), &json!(">"), &json!(0.0), &json!(0))
    );
    assert_eq!(body["value"], 1.0);
    let at = body["at"].as_str().expect("at");
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");
    let since = body["firingSince"].as_str().expect("firingSince").to_string();
    assert!(chrono::DateTime::parse_from_rfc3339(&since).is_ok(), "{since}");

    // Resolved: one more POST, naming when the firing began.
    let r = s.call("DELETE", &format!("/api/jobs/{first_dead}"), Some(&su), None).await;
    assert!(r.status < 300, "{}", r.text);
    let got = sink.wait_for(2, Duration::from_secs(15)).await;
    let resolved = &got[1];
    assert_signed(resolved, &secret, "alert.resolved");
    let body = resolved.json();
    assert_eq!((body["event"].as_str(), body["value"].as_f64()), (Some("alert.resolved"), Some(0.0)));
    assert_eq!(body["firingSince"], since.as_str());
    assert_ne!(resolved.header("x-backbone-delivery"), firing.header("x-backbone-delivery"));

    // Firing again within the cooldown: recorded, not posted.
    dead_job(&s, &su).await;
    let history = wait_alert_history(&s, &su, &rule, 3, Duration::from_secs(15)).await;
    assert_eq!(
        (history[0]["event"].as_str(), history[0]["notified"].as_bool()),
        (Some("firing"), Some(false))
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.received().len(), 2, "the cooldown holds back the second firing webhook");

    // Each delivery was a webhooks.deliver job; payloads name the secret's owner, never the secret.
    let jobs = wait_jobs(&s, &su, Duration::from_secs(10), |jobs| {
        jobs.len() == 2 && jobs.iter().all(|j| j["state"] == "completed")
    })
    .await;
    for job in &jobs {
        assert_eq!(job["queue"], "webhooks");
        assert_eq!(job["payload"]["secretOwner"], format!("alert/{rule}"));
        assert_eq!(job["progress"]["status"], 200);
        assert!(!job.to_string().contains(&secret), "{job}");
    }
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_delivery_until_it_answers_2xx_then_nothing_more() {
    // 500 twice, then 200.
    let sink = WebhookSink::start_with(|_, n| if n < 2 { 500 } else { 200 }).await;
    let s = Server::start_with(loopback_allowed(&[("BACKBONE_WEBHOOKS_BACKOFF_BASE_MS", "200")]));
    let su = s.setup_superuser().await;
    let secret = "a-chosen-secret-0123456789";
    let created =
        dead_jobs_rule(&s, &su, json!({"webhooks": [sink.url("/flaky")], "webhookSecret": secret})).await;
    assert!(created.get("webhookSecret").is_none(), "a chosen secret is not echoed: {created}");
    assert_eq!(created["webhookSecretHint"], "…6789");
    dead_job(&s, &su).await;

    let got = sink.wait_for(3, Duration::from_secs(20)).await;
    let delivery = got[0].header("x-backbone-delivery").to_string();
    for attempt in &got {
        assert_signed(attempt, secret, "alert.firing");
        assert_eq!(attempt.header("x-backbone-delivery"), delivery, "one delivery id across retries");
        assert_eq!(attempt.body, got[0].body, "the same body on every attempt");
    }
    let jobs =
        wait_jobs(&s, &su, Duration::from_secs(10), |jobs| jobs.iter().any(|j| j["state"] == "completed"))
            .await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!((job["attempt"].as_u64(), job["maxAttempts"].as_u64()), (Some(3), Some(8)), "{job}");
    let errors: Vec<&str> =
        job["errors"].as_array().expect("errors").iter().filter_map(|e| e["error"].as_str()).collect();
    assert_eq!(errors.len(), 2, "{job}");
    assert!(errors.iter().all(|e| e.contains("HTTP 500") && e.contains("answered 500")), "{errors:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(sink.received().len(), 3, "a 2xx ends the deliveries");
}

#[tokio::test]
async fn deliveries_die_after_their_last_attempt_and_at_once_on_410_gone() {
    let sink = WebhookSink::start_with(|path, _| if path == "/gone" { 410 } else { 503 }).await;
    let s = Server::start_with(loopback_allowed(&[
        ("BACKBONE_WEBHOOKS_BACKOFF_BASE_MS", "100"),
        ("BACKBONE_WEBHOOKS_MAX_ATTEMPTS", "3"),
    ]));
    let su = s.setup_superuser().await;
    dead_jobs_rule(&s, &su, json!({"webhooks": [sink.url("/down"), sink.url("/gone")]})).await;
    dead_job(&s, &su).await;
    let jobs = wait_jobs(&s, &su, Duration::from_secs(20), |jobs| {
        jobs.len() == 2 && jobs.iter().all(|j| j["state"] == "dead")
    })
    .await;
    let by_url = |path: &str| {
        jobs.iter()
            .find(|j| j["payload"]["url"].as_str().is_some_and(|u| u.ends_with(path)))
            .cloned()
            .expect("job")
    };
    let (down, gone) = (by_url("/down"), by_url("/gone"));
    assert_eq!(down["attempt"], 3, "{down}");
    assert!(down["lastError"].as_str().is_some_and(|e| e.contains("HTTP 503")), "{down}");
    assert_eq!(gone["attempt"], 1, "410 is final: {gone}");
    assert!(
        gone["lastError"].as_str().is_some_and(|e| e.contains("HTTP 410") && e.contains("not retried")),
        "{gone}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = sink.received();
    assert_eq!(received.iter().filter(|r| r.path == "/down").count(), 3);
    assert_eq!(received.iter().filter(|r| r.path == "/gone").count(), 1);
}

#[tokio::test]
async fn a_rule_with_a_private_webhook_target_is_refused_unless_the_config_allows_it() {
    let s = Server::start_with(env(&[]));
    let su = s.setup_superuser().await;
    let refused = [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
    ]
    .map(|u| (json!(u), "validation_private_target"))
    .into_iter()
    .chain(
        [
            json!("ftp://example.com/hook"),
            json!("not a url"),
            json!(7),
            json!("https://user:pw@example.com/"),
        ]
        .map(|u| (u, "validation_invalid_url")),
    );
    for (url, code) in refused {
        s.call(
            "POST",
            "/api/alerts",
            Some(&su),
            Some(json!({"name": "x", "series": "jobs_dead", "threshold": 0, "webhooks": [url]})),
        )
        .await
        .assert_problem(400)
        .assert_field_error("webhooks", code);
    }
    s.call(
        "POST",
        "/api/alerts",
        Some(&su),
        Some(json!({"name": "x", "series": "jobs_dead", "threshold": 0, "webhookSecret": "short"})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("webhookSecret", "validation_invalid_secret");
    // Updates are checked the same way.
    let rules = s.call("GET", "/api/alerts", Some(&su), None).await;
    let some_rule = rules.body["items"][0]["id"].as_str().expect("a default rule").to_string();
    s.call(
        "PATCH",
        &format!("/api/alerts/{some_rule}"),
        Some(&su),
        Some(json!({"webhooks": ["http://localhost/x"]})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("webhooks", "validation_private_target");

    // An allowed range opens exactly that range (lists map from comma-separated variables).
    let lan =
        Server::start_with(env(&[("BACKBONE_WEBHOOKS_ALLOWED_PRIVATE_RANGES", "127.0.0.0/8, 10.9.0.0/16")]));
    let su = lan.setup_superuser().await;
    let ok = lan
        .call(
            "POST",
            "/api/alerts",
            Some(&su),
            Some(json!({"name": "x", "series": "jobs_dead", "threshold": 0, "webhooks": ["http://127.0.0.1:9/hook", "http://10.9.1.1/x"]})),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    lan.call(
        "POST",
        "/api/alerts",
        Some(&su),
        Some(json!({"name": "x", "series": "jobs_dead", "threshold": 0, "webhooks": ["http://10.10.1.1/x"]})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("webhooks", "validation_private_target");
}

#[tokio::test]
async fn a_delivery_to_a_target_the_policy_no_longer_allows_dies_without_a_request() {
    let sink = WebhookSink::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = Server::start_in(dir.path(), loopback_allowed(&[]));
    let su = first.setup_superuser().await;
    dead_jobs_rule(&first, &su, json!({"webhooks": [sink.url("/hook")]})).await;
    assert_eq!(first.terminate(), Some(0), "clean shutdown");
    // Same data, default policy: the saved loopback URL is checked again at delivery.
    let s = Server::start_in(dir.path(), env(&[]));
    let su = s.login().await;
    dead_job(&s, &su).await;
    let jobs =
        wait_jobs(&s, &su, Duration::from_secs(15), |jobs| jobs.iter().any(|j| j["state"] == "dead")).await;
    let job = &jobs[0];
    assert_eq!(job["attempt"], 1, "a refused target is final: {job}");
    assert!(job["lastError"].as_str().is_some_and(|e| e.contains("non-public address")), "{job}");
    assert!(sink.received().is_empty(), "nothing reached the receiver: {:?}", sink.received());
}
