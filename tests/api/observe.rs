//! Observability: `/metrics` parsed by Prometheus's reference parser (Python
//! `prometheus_client`) with counts that move, its access rules, the request log with its
//! filters, paging and stats, readiness checks, and the metric history across a restart.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{dead_job, posts_collection, wait_alert_history, Server, StartOptions};

/// One parsed sample.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    kind: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses exposition text with `tests/observe/parse_metrics.py`; panics on a parse error.
fn parse(text: &str) -> Vec<Sample> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/observe/parse_metrics.py");
    let mut child = Command::new(crate::common::setup::python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the test venv's python3 runs tests/observe/parse_metrics.py");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "tests/observe/parse_metrics.py failed: the Prometheus parser rejected /metrics, or the test \
         venv is broken (its error says which; delete .cache/test-venv to rebuild it): {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("parser json");
    parsed
        .into_iter()
        .map(|s| Sample {
            name: s["name"].as_str().unwrap_or_default().to_string(),
            kind: s["type"].as_str().unwrap_or_default().to_string(),
            labels: s["labels"]
                .as_object()
                .map(|m| {
                    m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect()
                })
                .unwrap_or_default(),
            value: s["value"].as_f64().unwrap_or(f64::NAN),
        })
        .collect()
}

/// The value of the sample `name` whose labels include `labels` (0 when absent).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map_or(0.0, |s| s.value)
}

async fn scrape(s: &Server, auth: &str) -> Vec<Sample> {
    let r = s.call("GET", "/metrics", Some(auth), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.content_type.starts_with("text/plain; version=0.0.4"), "{}", r.content_type);
    parse(&r.text)
}

const RECORD_ROUTE: &str = "/api/collections/{collection}/records/{id}";

async fn with_post(s: &Server, su: &str) -> String {
    let r = s.call("POST", "/api/collections", Some(su), Some(posts_collection("posts"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = s.call("POST", "/api/collections/posts/records", Some(su), Some(json!({"title": "hello"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["id"].as_str().expect("id").to_string()
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_request_counts_move() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    let id = with_post(&s, &su).await;
    let path = format!("/api/collections/posts/records/{id}");
    let before = scrape(&s, &su).await;
    let get_ok = [("route", RECORD_ROUTE), ("method", "GET"), ("status", "200")];
    let get_404 = [("route", RECORD_ROUTE), ("method", "GET"), ("status", "404")];
    for _ in 0..3 {
        assert_eq!(s.call("GET", &path, Some(&su), None).await.status, 200);
    }
    s.call("GET", "/api/collections/posts/records/nosuchrecord123", Some(&su), None)
        .await
        .assert_problem(404);
    s.call("GET", "/no/such/path/at/all", None, None).await;
    let after = scrape(&s, &su).await;

    assert_eq!(
        value(&after, "backbone_http_requests_total", &get_ok)
            - value(&before, "backbone_http_requests_total", &get_ok),
        3.0
    );
    assert_eq!(value(&after, "backbone_http_requests_total", &get_404), 1.0);
    let latency = [("route", RECORD_ROUTE), ("method", "GET")];
    assert_eq!(value(&after, "backbone_http_request_duration_seconds_count", &latency), 4.0);
    let inf = [("route", RECORD_ROUTE), ("method", "GET"), ("le", "+Inf")];
    assert_eq!(value(&after, "backbone_http_request_duration_seconds_bucket", &inf), 4.0);
    // Raw paths never become label values.
    for sample in &after {
        if let Some(route) = sample.labels.get("route") {
            assert!(!route.contains(&id) && !route.contains("/no/such"), "raw path as a label: {sample:?}");
        }
    }
    assert_eq!(value(&after, "backbone_http_requests_total", &[("route", "unmatched")]), 1.0);
    // The scrape that is running counts itself as in flight.
    assert_eq!(value(&after, "backbone_http_requests_in_flight", &[]), 1.0);
    // Histogram buckets are cumulative.
    let buckets: Vec<f64> = after
        .iter()
        .filter(|x| {
            x.name == "backbone_http_request_duration_seconds_bucket"
                && x.labels.get("route").map(String::as_str) == Some(RECORD_ROUTE)
                && x.labels.get("method").map(String::as_str) == Some("GET")
        })
        .map(|x| x.value)
        .collect();
    assert!(buckets.len() > 5 && buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");

    // Every family the issue names is there, with a sensible type.
    for (name, kind) in [
        ("backbone_store_file_bytes", "gauge"),
        ("backbone_store_commits_total", "counter"),
        ("backbone_store_batch_size_count", "histogram"),
        ("backbone_store_commit_duration_seconds_count", "histogram"),
        ("backbone_jobs_runs_total", "counter"),
        ("backbone_jobs_failures_total", "counter"),
        ("backbone_mail_sent_total", "counter"),
        ("backbone_mail_failed_total", "counter"),
        ("backbone_auth_logins_total", "counter"),
        ("backbone_rate_limited_total", "counter"),
        ("backbone_process_resident_memory_bytes", "gauge"),
        ("backbone_process_open_fds", "gauge"),
        ("backbone_process_uptime_seconds", "gauge"),
        ("backbone_host_memory_total_bytes", "gauge"),
        ("backbone_disk_free_bytes", "gauge"),
    ] {
        let found = after.iter().find(|x| x.name == name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(found.kind, kind, "{name}");
    }
    assert!(value(&after, "backbone_store_file_bytes", &[]) > 0.0);
    assert!(
        value(&after, "backbone_store_commits_total", &[])
            > value(&before, "backbone_store_commits_total", &[]) - 1.0
    );
    assert!(value(&after, "backbone_process_resident_memory_bytes", &[]) > 1_000_000.0);
    assert!(value(&after, "backbone_disk_free_bytes", &[]) > 0.0);
}

#[tokio::test]
async fn sign_ins_and_rate_limits_are_counted() {
    let s = Server::start_with(StartOptions {
        env: vec![("BACKBONE_RATE_LIMITS_AUTH_PER_IP".into(), "3/60s".into())],
        args: vec![],
    });
    let su = s.setup_superuser().await;
    let before = scrape(&s, &su).await;
    let wrong = json!({"identity": crate::common::SU_EMAIL, "password": "wrong-password-1"});
    let mut limited = 0;
    for _ in 0..4 {
        let r = s
            .call("POST", "/api/collections/_superusers/auth-with-password", None, Some(wrong.clone()))
            .await;
        if r.status == 429 {
            limited += 1;
        }
    }
    let after = scrape(&s, &su).await;
    let failed = [("outcome", "failed")];
    // setup consumed one of the 3 auth requests: two wrong passwords, then 429s.
    assert_eq!(limited, 2);
    assert_eq!(
        value(&after, "backbone_auth_logins_total", &failed)
            - value(&before, "backbone_auth_logins_total", &failed),
        2.0
    );
    assert_eq!(
        value(&after, "backbone_rate_limited_total", &[])
            - value(&before, "backbone_rate_limited_total", &[]),
        2.0
    );
    let r429 = [("route", "/api/collections/{collection}/auth-with-password"), ("status", "429")];
    assert_eq!(value(&after, "backbone_http_requests_total", &r429), 2.0);
}

#[tokio::test]
async fn metrics_need_a_superuser_a_metrics_key_or_an_allowlisted_scraper() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    s.call("GET", "/metrics", None, None).await.assert_problem(401);
    s.call("GET", "/api/logs", None, None).await.assert_problem(401);
    s.call("GET", "/api/metrics", None, None).await.assert_problem(401);
    let r = s.call("POST", "/api/collections", Some(&su), Some(posts_collection("posts"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let key = |body: Value| async {
        let r = s.call("POST", "/api/keys", Some(&su), Some(body)).await;
        assert_eq!(r.status, 201, "{}", r.text);
        format!("Bearer {}", r.body["key"].as_str().expect("key"))
    };
    let reader =
        key(json!({"name": "prometheus", "scopes": {"posts": ["list"]}, "capabilities": ["metrics.read"]}))
            .await;
    let other = key(json!({"name": "app", "scopes": {"posts": ["list"]}})).await;
    assert_eq!(s.call("GET", "/metrics", Some(&reader), None).await.status, 200);
    assert_eq!(s.call("GET", "/api/logs", Some(&reader), None).await.status, 200);
    s.call("GET", "/metrics", Some(&other), None).await.assert_problem(403);
    s.call("GET", "/api/logs/stats", Some(&other), None).await.assert_problem(403);

    let open = Server::start_with(StartOptions {
        env: vec![("BACKBONE_OBSERVE_METRICS_ALLOWED_IPS".into(), "127.0.0.0/8".into())],
        args: vec![],
    });
    let r = open.call("GET", "/metrics", None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!parse(&r.text).is_empty());
    open.call("GET", "/api/logs", None, None).await.assert_problem(401);
}

/// Polls `/api/logs?{query}` until it lists at least `n` rows.
async fn wait_logs(s: &Server, su: &str, query: &str, n: u64) -> Value {
    let started = Instant::now();
    loop {
        let r = s.call("GET", &format!("/api/logs?{query}"), Some(su), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if r.body["totalItems"].as_u64().unwrap_or(0) >= n {
            return r.body;
        }
        assert!(started.elapsed() < crate::common::PATIENCE, "fewer than {n} rows for {query}: {}", r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_request_log_lists_filters_pages_and_counts_requests() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    let id = with_post(&s, &su).await;
    for _ in 0..5 {
        assert_eq!(
            s.call("GET", &format!("/api/collections/posts/records/{id}"), Some(&su), None).await.status,
            200
        );
    }
    let mut refused = 0;
    for _ in 0..2 {
        let r =
            s.call("GET", "/api/collections/posts/records/missingrecord12?filter=secret", None, None).await;
        refused = r.status;
    }
    assert!((400..500).contains(&refused), "{refused}");
    let route = "route=%2Fapi%2Fcollections%2F%7Bcollection%7D%2Frecords%2F%7Bid%7D";
    let ok = wait_logs(&s, &su, &format!("{route}&status=200"), 5).await;
    assert_eq!(ok["totalItems"], 5, "{ok}");
    let row = &ok["items"][0];
    assert_eq!(row["method"], "GET");
    assert_eq!(row["route"], RECORD_ROUTE);
    assert_eq!(row["status"], 200);
    assert_eq!(row["auth"], "token");
    assert_eq!(row["ip"], "127.0.0.1");
    assert!(row["durationMs"].as_f64().is_some_and(|d| d >= 0.0), "{row}");
    assert!(row["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{row}");
    // No raw paths, query strings or credentials in rows.
    let text = ok.to_string();
    assert!(!text.contains(&id) && !text.contains(&su) && !text.contains("filter=secret"), "{text}");

    let missing = wait_logs(&s, &su, &format!("{route}&status=4xx"), 2).await;
    assert_eq!(missing["totalItems"], 2, "{missing}");
    assert_eq!(missing["items"][0]["auth"], "none");
    assert_eq!(missing["items"][0]["status"], refused);

    // Paging: newest first, pages do not overlap.
    let p1 = wait_logs(&s, &su, &format!("{route}&perPage=3&page=1"), 7).await;
    let p2 = wait_logs(&s, &su, &format!("{route}&perPage=3&page=2"), 7).await;
    assert_eq!(p1["totalItems"], 7);
    assert_eq!(p1["totalPages"], 3);
    assert_eq!(p1["items"].as_array().map(Vec::len), Some(3));
    let ids = |p: &Value| {
        p["items"]
            .as_array()
            .map(|a| a.iter().map(|i| i["id"].to_string()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert!(ids(&p1).iter().all(|i| !ids(&p2).contains(i)));
    assert!(p1["items"][0]["time"].as_str() >= p1["items"][2]["time"].as_str());
    assert!(p1["items"][2]["time"].as_str() >= p2["items"][0]["time"].as_str());
    // One row by its id (pb.logs.getOne), and PocketBase's stats shape without step.
    let first = p1["items"][0]["id"].as_str().expect("id");
    let one = s.call("GET", &format!("/api/logs/{first}"), Some(&su), None).await;
    assert_eq!(one.status, 200, "{}", one.text);
    assert_eq!(one.body, p1["items"][0]);
    for bad in ["nope", "00-1", "000000000000000000000000-99999", "zz0000000000000000000000-0"] {
        s.call("GET", &format!("/api/logs/{bad}"), Some(&su), None).await.assert_problem(404);
    }
    let hourly = s.call("GET", &format!("/api/logs/stats?{route}"), Some(&su), None).await;
    assert_eq!(hourly.status, 200, "{}", hourly.text);
    let hours = hourly.body.as_array().expect("PocketBase's array shape");
    assert!(!hours.is_empty(), "{}", hourly.text);
    assert!(
        hours.iter().all(|h| h["total"].as_u64() > Some(0) && h["date"].as_str().map(str::len) == Some(19)),
        "{}",
        hourly.text
    );
    assert!(hours.iter().map(|h| h["total"].as_u64().unwrap_or(0)).sum::<u64>() >= 7, "{}", hourly.text);

    let stats = s.call("GET", &format!("/api/logs/stats?{route}&step=60"), Some(&su), None).await;
    assert_eq!(stats.status, 200, "{}", stats.text);
    assert_eq!(stats.body["total"], 7, "{}", stats.text);
    let sum = |class: &str| {
        stats.body["items"]
            .as_array()
            .map_or(0, |a| a.iter().map(|b| b[class].as_u64().unwrap_or(0)).sum::<u64>())
    };
    assert_eq!((sum("2xx"), sum("4xx"), sum("5xx")), (5, 2, 0));

    for bad in
        ["status=6xx", "status=abc", "from=yesterday", "perPage=0", "minDurationMs=-1", "from=20&to=10"]
    {
        s.call("GET", &format!("/api/logs?{bad}"), Some(&su), None).await.assert_problem(400);
    }
    for bad in ["step=0", "step=x", "from=0&step=1"] {
        s.call("GET", &format!("/api/logs/stats?{bad}"), Some(&su), None).await.assert_problem(400);
    }
}

#[tokio::test]
async fn readiness_fails_when_free_disk_falls_below_the_threshold() {
    let s = Server::start();
    let su = s.setup_superuser().await;
    let r = s.call("GET", "/api/ready", Some(&su), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    for check in ["storage", "queue", "disk"] {
        assert_eq!(r.body["checks"][check]["ok"], true, "{}", r.text);
    }
    assert!(
        s.call("GET", "/api/ready", None, None).await.body.get("checks").is_none(),
        "details are for superusers"
    );

    // A threshold no disk meets (1 EiB).
    let full = Server::start_with(StartOptions {
        env: vec![("BACKBONE_OBSERVE_READY_MIN_DISK_FREE_MB".into(), "1099511627776".into())],
        args: vec![],
    });
    let fsu = full.setup_superuser().await;
    let r = full.call("GET", "/api/ready", Some(&fsu), None).await;
    r.assert_problem(503);
    assert_eq!(r.body["data"]["ready"], false);
    assert_eq!(r.body["data"]["checks"]["disk"]["ok"], false, "{}", r.text);
    assert_eq!(r.body["data"]["checks"]["storage"]["ok"], true, "{}", r.text);
    assert!(r.body["detail"].as_str().is_some_and(|d| d.contains("disk")), "{}", r.text);
    let anonymous = full.call("GET", "/api/ready", None, None).await;
    anonymous.assert_problem(503);
    assert!(anonymous.body["data"].get("checks").is_none());
    // Liveness is unaffected.
    assert_eq!(full.call("GET", "/api/health", None, None).await.status, 200);
}

#[tokio::test]
async fn metric_history_is_sampled_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options =
        StartOptions { env: vec![("BACKBONE_OBSERVE_HISTORY_SAMPLE_SECS".into(), "1".into())], args: vec![] };
    let mut s = Server::start_in(dir.path(), options.clone());
    let su = s.setup_superuser().await;
    let catalog = s.call("GET", "/api/metrics", Some(&su), None).await;
    assert_eq!(catalog.status, 200, "{}", catalog.text);
    assert!(catalog.body["available"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x["name"] == "http_requests_per_sec")));
    let started = chrono::Utc::now().timestamp() - 1;
    // Traffic during the first samples.
    for _ in 0..30 {
        s.call("GET", "/api/health", None, None).await;
    }
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(s.terminate(), Some(0));
    let stopped = chrono::Utc::now().timestamp();

    let s = Server::start_in(dir.path(), options);
    let su = s.login().await;
    let query = format!(
        "/api/metrics?series=http_requests_per_sec,process_rss_bytes&from={started}&to={stopped}&step=1"
    );
    let r = s.call("GET", &query, Some(&su), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let points = r.body["series"]["http_requests_per_sec"].as_array().cloned().unwrap_or_default();
    assert!(points.len() >= 2, "samples from before the restart: {}", r.text);
    assert!(points.iter().all(|p| p[0].as_i64().is_some_and(|t| t >= started && t <= stopped)), "{}", r.text);
    assert!(
        points.iter().any(|p| p[1].as_f64().is_some_and(|v| v > 0.0)),
        "traffic shows as a rate: {}",
        r.text
    );
    let rss = r.body["series"]["process_rss_bytes"].as_array().cloned().unwrap_or_default();
    assert!(rss.iter().all(|p| p[1].as_f64().is_some_and(|v| v > 1e6)), "{}", r.text);

    for bad in [
        "series=nope",
        "series=http_p99_ms&step=0",
        "series=http_p99_ms&from=10&to=5",
        "series=http_p99_ms&from=x",
    ] {
        s.call("GET", &format!("/api/metrics?{bad}"), Some(&su), None).await.assert_problem(400);
    }
}

#[tokio::test]
async fn an_alert_fires_after_its_duration_emails_once_resolves_and_respects_its_cooldown() {
    use crate::common::smtp::{free_port, read_messages, SmtpSink};
    let port = free_port();
    let out = tempfile::tempdir().expect("tempdir");
    let _sink = SmtpSink::start(port, out.path(), &[]);
    let env = [
        ("BACKBONE_MAIL_ENABLED", "true".to_string()),
        ("BACKBONE_MAIL_HOST", "127.0.0.1".to_string()),
        ("BACKBONE_MAIL_PORT", port.to_string()),
        ("BACKBONE_MAIL_SECURITY", "none".to_string()),
        ("BACKBONE_JOBS_TEST_KINDS", "true".to_string()),
        ("BACKBONE_OBSERVE_HISTORY_SAMPLE_SECS", "1".to_string()),
    ];
    let s = Server::start_with(StartOptions {
        env: env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        args: vec![],
    });
    let su = s.setup_superuser().await;

    // The defaults exist, without recipients.
    let list = s.call("GET", "/api/alerts", Some(&su), None).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let defaults = list.body["items"].as_array().cloned().unwrap_or_default();
    for series in [
        "http_error_ratio",
        "http_p99_ms",
        "jobs_dead",
        "jobs_oldest_waiting_secs",
        "disk_free_bytes",
        "host_memory_available_bytes",
    ] {
        assert!(defaults.iter().any(|r| r["series"] == series), "default rule on {series}: {}", list.text);
    }
    // Bad input is a 400 with field errors; unknown ids are 404.
    s.call("POST", "/api/alerts", Some(&su), Some(json!({"name": "x", "series": "nope", "threshold": 1})))
        .await
        .assert_problem(400)
        .assert_field_error("series", "validation_unknown_series");
    s.call("PATCH", "/api/alerts/nosuchrule", Some(&su), Some(json!({"enabled": false})))
        .await
        .assert_problem(404);
    s.call("GET", "/api/alerts", None, None).await.assert_problem(401);

    let created = s
        .call(
            "POST",
            "/api/alerts",
            Some(&su),
            Some(json!({"name": "Dead jobs (test)", "series": "jobs_dead", "op": ">", "threshold": 0,
                        "forSecs": 2, "cooldownSecs": 3600, "emails": ["ops@example.com"]})),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let rule = created.body["id"].as_str().expect("rule id").to_string();
    assert_eq!(created.body["state"], "ok");

    // The condition starts holding: pending first, firing once it held for 2 s.
    let first = dead_job(&s, &su).await;
    let dead_at = Instant::now();
    let pending = Instant::now();
    loop {
        let r = s.call("GET", &format!("/api/alerts/{rule}"), Some(&su), None).await;
        if r.body["state"] == "pending" {
            break;
        }
        assert!(pending.elapsed() < Duration::from_secs(10), "never pending: {}", r.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fired = wait_alert_history(&s, &su, &rule, 1, Duration::from_secs(15)).await;
    assert!(dead_at.elapsed() >= Duration::from_secs(2), "fired before the condition held for 2 s");
    assert_eq!(fired[0]["event"], "firing");
    assert_eq!(fired[0]["notified"], true);
    assert_eq!(fired[0]["value"], 1.0);

    // One email, to the rule's recipient.
    let started = Instant::now();
    while read_messages(out.path()).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(15), "no alert email arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let messages = read_messages(out.path());
    assert_eq!(messages.len(), 1, "{messages:?}");
    let text = messages[0].to_string();
    assert!(text.contains("ops@example.com") && text.contains("[FIRING] Dead jobs (test)"), "{text}");

    // The condition stops holding: resolved, with its own email.
    let r = s.call("DELETE", &format!("/api/jobs/{first}"), Some(&su), None).await;
    assert!(r.status < 300, "{}", r.text);
    let resolved = wait_alert_history(&s, &su, &rule, 2, Duration::from_secs(15)).await;
    assert_eq!(resolved[0]["event"], "resolved");
    let started = Instant::now();
    while read_messages(out.path()).len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(15), "no resolve email arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(read_messages(out.path())[1].to_string().contains("[RESOLVED] Dead jobs (test)"));

    // Within the cooldown it fires again (recorded) without another email.
    dead_job(&s, &su).await;
    let again = wait_alert_history(&s, &su, &rule, 3, Duration::from_secs(15)).await;
    assert_eq!(again[0]["event"], "firing");
    assert_eq!(again[0]["notified"], false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(read_messages(out.path()).len(), 2, "the cooldown holds back the second firing email");

    // Rules can be switched off and deleted.
    let r = s.call("PATCH", &format!("/api/alerts/{rule}"), Some(&su), Some(json!({"enabled": false}))).await;
    assert_eq!(
        (r.status, r.body["enabled"].clone(), r.body["state"].clone()),
        (200, json!(false), json!("ok")),
        "{}",
        r.text
    );
    assert_eq!(s.call("DELETE", &format!("/api/alerts/{rule}"), Some(&su), None).await.status, 204);
    s.call("GET", &format!("/api/alerts/{rule}"), Some(&su), None).await.assert_problem(404);
}

#[tokio::test]
async fn systemd_gets_ready_and_watchdog_notifications() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
    socket.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let _s = Server::start_with(StartOptions {
        env: vec![
            ("NOTIFY_SOCKET".into(), path.display().to_string()),
            // 400 ms: keep-alives every 200 ms.
            ("WATCHDOG_USEC".into(), "400000".into()),
        ],
        args: vec![],
    });
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    let started = Instant::now();
    while seen.iter().filter(|m: &&String| m.contains("WATCHDOG=1")).count() < 3 {
        assert!(started.elapsed() < Duration::from_secs(10), "notifications so far: {seen:?}");
        let n = socket.recv(&mut buf).expect("a notification");
        seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
    }
    assert!(seen[0].contains("READY=1"), "READY comes first: {seen:?}");
}

#[tokio::test]
async fn the_heartbeat_url_is_pinged_while_the_server_runs() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _s = Server::start_with(StartOptions {
        env: vec![
            (
                "BACKBONE_OBSERVE_HEARTBEAT_URL".into(),
                format!("http://127.0.0.1:{port}/ping/abc?from=backbone"),
            ),
            ("BACKBONE_OBSERVE_HEARTBEAT_SECS".into(), "1".into()),
        ],
        args: vec![],
    });
    let mut lines = Vec::new();
    for _ in 0..2 {
        let (mut conn, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("a heartbeat within 10 s")
            .expect("accept");
        let mut buf = vec![0u8; 1024];
        let n = tokio::io::AsyncReadExt::read(&mut conn, &mut buf).await.expect("read");
        let request = String::from_utf8_lossy(&buf[..n]).to_string();
        lines.push(request.lines().next().unwrap_or_default().to_string());
        tokio::io::AsyncWriteExt::write_all(&mut conn, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            .await
            .expect("answer");
    }
    assert!(lines.iter().all(|l| l == "GET /ping/abc?from=backbone HTTP/1.1"), "{lines:?}");
}

#[tokio::test]
async fn json_log_format_writes_one_json_object_per_stderr_line() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("dir");
    let mut child = crate::common::command()
        .args(["serve", "--http", "127.0.0.1:0", "--dir"])
        .arg(dir.path())
        .env("BACKBONE_LOG_FORMAT", "json")
        .env("BACKBONE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
            }
        }
    });
    let errors =
        std::thread::spawn(move || BufReader::new(stderr).lines().map_while(Result::ok).collect::<Vec<_>>());
    let addr = rx.recv_timeout(Duration::from_secs(30)).expect("server started");
    let client = reqwest::Client::new();
    // Some traffic before the shutdown, so the run is not just start and stop.
    let r = client.get(format!("http://{addr}/api/collections/nope/records")).send().await.expect("request");
    assert_eq!(r.status(), 404);
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("exit");
    assert!(exit.success(), "{exit:?}");
    let lines = errors.join().expect("stderr reader");
    assert!(lines.len() >= 3, "expected several log lines: {lines:?}");
    let mut setup_token = None;
    let mut messages = Vec::new();
    for line in lines.iter().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
        messages.push(v["fields"]["message"].as_str().unwrap_or_default().to_string());
        if let Some(t) = v["fields"]["setup_token"].as_str() {
            setup_token = Some(t.to_string());
        }
    }
    let token = setup_token.expect("the setup token is a field of a JSON event");
    assert!(!token.is_empty());
    assert!(messages.iter().any(|m| m.contains("shutting down")), "{messages:?}");
}
