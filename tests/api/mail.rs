//! Email against a real SMTP server (`tests/mail/smtp_sink.py`, Python aiosmtpd): delivered
//! messages parsed and checked, 4xx retried and delivered once, 5xx dead with the reply
//! logged, a server that is down or SIGKILLed catches up, header injection refused, the
//! settings API (password write-only, superusers only), test emails (API and CLI), the log.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::smtp::{free_port, read_messages, SmtpSink};
use crate::common::{command, Server, StartOptions};

/// A server whose config points at an SMTP server on `port` (plain, local relay), with fast
/// retries.
fn mail_server(port: u16) -> Server {
    Server::start_with(StartOptions { env: mail_env(port), args: vec![] })
}

fn mail_env(port: u16) -> Vec<(String, String)> {
    [
        ("BACKBONE_MAIL_ENABLED", "true".to_string()),
        ("BACKBONE_MAIL_HOST", "127.0.0.1".to_string()),
        ("BACKBONE_MAIL_PORT", port.to_string()),
        ("BACKBONE_MAIL_SECURITY", "none".to_string()),
        ("BACKBONE_MAIL_TIMEOUT_SECS", "5".to_string()),
        ("BACKBONE_MAIL_SENDER_NAME", "Acme Robot".to_string()),
        ("BACKBONE_MAIL_SENDER_ADDRESS", "robot@acme.test".to_string()),
        ("BACKBONE_MAIL_APP_NAME", "Acme & Co".to_string()),
        ("BACKBONE_MAIL_APP_URL", "https://acme.test".to_string()),
        ("BACKBONE_JOBS_BACKOFF_BASE_MS", "100".to_string()),
        ("BACKBONE_JOBS_BACKOFF_MAX_MS", "400".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

async fn send(s: &Server, t: &str, body: Value) -> String {
    let r = s.call("POST", "/api/mail/send", Some(t), Some(body)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(r.body["kind"], "mail.send", "{}", r.text);
    assert_eq!(
        r.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(format!("/api/jobs/{}", r.body["id"].as_str().unwrap_or_default()).as_str())
    );
    r.body["id"].as_str().expect("job id").to_string()
}

fn raw(to: &str, subject: &str) -> Value {
    json!({"to": to, "subject": subject, "text": format!("Body of {subject}")})
}

/// Polls the delivery log row of email `id` until `done` holds.
async fn wait_log(s: &Server, t: &str, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let r = s.call("GET", "/api/mail/log?perPage=500", Some(t), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let row = r.body["items"].as_array().and_then(|items| items.iter().find(|i| i["id"] == id)).cloned();
        if let Some(row) = row {
            if done(&row) {
                return row;
            }
            assert!(
                started.elapsed() < crate::common::patient(within),
                "email {id} did not reach the expected state: {row}"
            );
        } else {
            assert!(
                started.elapsed() < crate::common::patient(within),
                "email {id} is not in the log: {}",
                r.text
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn state(expected: &'static str) -> impl Fn(&Value) -> bool {
    move |row: &Value| row["state"] == expected
}

/// Waits until `out` holds `n` messages.
async fn wait_messages(out: &std::path::Path, n: usize, within: Duration) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let messages = read_messages(out);
        if messages.len() >= n {
            return messages;
        }
        assert!(
            started.elapsed() < crate::common::patient(within),
            "only {} of {n} messages arrived",
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn subjects(messages: &[Value]) -> Vec<String> {
    messages.iter().map(|m| m["headers"]["Subject"].as_str().unwrap_or_default().to_string()).collect()
}

#[tokio::test]
async fn a_templated_email_is_delivered_with_headers_both_parts_and_variables_substituted() {
    let out = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(free_port(), out.path(), &[]);
    let s = mail_server(sink.port);
    let t = s.setup_superuser().await;
    let id = send(
        &s,
        &t,
        json!({
            "to": "ann@example.com",
            "toName": "Ann Ödegaard",
            "template": "verification",
            "vars": {"token": "tok<123>", "record": {"email": "ann@example.com"}}
        }),
    )
    .await;
    let row = wait_log(&s, &t, &id, Duration::from_secs(20), state("sent")).await;
    assert_eq!(row["attempts"], 1, "{row}");
    assert_eq!(row["template"], "verification");
    assert_eq!(row["subject"], "Verify your Acme & Co email");
    assert!(row["lastReply"].as_str().unwrap_or_default().starts_with("250 2.0.0"), "{row}");
    assert!(row["sentAt"].is_string(), "{row}");

    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["mailFrom"], "robot@acme.test");
    assert_eq!(m["rcptTos"], json!(["ann@example.com"]));
    let headers = &m["headers"];
    assert_eq!(headers["Subject"], "Verify your Acme & Co email");
    assert_eq!(headers["From"], "Acme Robot <robot@acme.test>");
    assert_eq!(headers["To"], "Ann Ödegaard <ann@example.com>", "non-ASCII names survive encoding");
    assert!(headers["Message-ID"].is_string() && headers["Date"].is_string(), "{headers}");
    assert_eq!(m["contentType"], "multipart/alternative");
    assert_eq!(m["parts"], json!(["multipart/alternative", "text/plain", "text/html"]));
    let action = "https://acme.test/_/#/auth/confirm-verification/tok<123>";
    let text = m["text"].as_str().expect("text part");
    assert!(text.contains(action), "the default action URL is built from appURL and the token: {text}");
    assert!(text.contains("Acme & Co"), "{text}");
    let html = m["html"].as_str().expect("html part");
    assert!(html.contains("confirm-verification/tok&lt;123&gt;"), "values are HTML-escaped in HTML: {html}");
    assert!(html.contains("Acme &amp; Co") && !html.contains("{{"), "{html}");
}

#[tokio::test]
async fn raw_email_and_locale_variants_edited_in_settings_are_delivered() {
    let out = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(free_port(), out.path(), &[]);
    let s = mail_server(sink.port);
    let t = s.setup_superuser().await;
    let r = s
        .call(
            "PATCH",
            "/api/settings",
            Some(&t),
            Some(json!({"templates": {"otp": {
                "pt": {"subject": "Seu código {{otp}}", "text": "Código: {{otp}} para {{record.email}}", "html": "<p>{{otp}}</p>"},
                "default": {"subject": "Code {{otp}}", "text": "Code: {{otp}}"}
            }}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["templates"]["otp"]["pt"]["subject"], "Seu código {{otp}}");
    let vars = json!({"otp": "424242", "record": {"email": "bia@example.com"}});
    let pt =
        send(&s, &t, json!({"to": "bia@example.com", "locale": "pt-BR", "template": "otp", "vars": vars}))
            .await;
    let de = send(&s, &t, json!({"to": "dirk@example.com", "locale": "de", "template": "otp", "vars": vars}))
        .await;
    let plain = send(&s, &t, raw("carl@example.com", "Just text")).await;
    for id in [&pt, &de, &plain] {
        wait_log(&s, &t, id, Duration::from_secs(20), state("sent")).await;
    }
    let messages = sink.messages();
    let by_to = |to: &str| messages.iter().find(|m| m["rcptTos"][0] == to).cloned().expect(to);
    let m = by_to("bia@example.com");
    assert_eq!(m["headers"]["Subject"], "Seu código 424242", "pt-BR falls back to pt");
    assert_eq!(m["text"].as_str().map(str::trim_end), Some("Código: 424242 para bia@example.com"));
    assert_eq!(m["html"].as_str().map(str::trim_end), Some("<p>424242</p>"));
    let m = by_to("dirk@example.com");
    assert_eq!(m["headers"]["Subject"], "Code 424242", "no de variant: the default override");
    assert_eq!(m["contentType"], "text/plain", "a variant without HTML sends text only");
    let m = by_to("carl@example.com");
    assert_eq!(m["headers"]["Subject"], "Just text");
    assert_eq!(m["text"].as_str().map(str::trim_end), Some("Body of Just text"));
}

#[tokio::test]
async fn a_4xx_reply_is_retried_with_backoff_and_the_email_delivered_exactly_once() {
    let out = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(
        free_port(),
        out.path(),
        &["--fail-first", "2", "--fail-reply", "451 4.3.0 Greylisted, retry"],
    );
    let s = mail_server(sink.port);
    let t = s.setup_superuser().await;
    let id = send(&s, &t, raw("gina@example.com", "Greylisted once or twice")).await;
    let row = wait_log(&s, &t, &id, Duration::from_secs(20), state("sent")).await;
    assert_eq!(row["attempts"], 3, "two 451 replies, then 250: {row}");
    // A little longer, to catch a stray duplicate attempt.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let messages = sink.messages();
    assert_eq!(subjects(&messages), vec!["Greylisted once or twice"], "delivered exactly once");
    let job = s.call("GET", &format!("/api/jobs/{id}"), Some(&t), None).await;
    assert_eq!(job.body["state"], "completed");
    let errors: Vec<&str> =
        job.body["errors"].as_array().expect("errors").iter().filter_map(|e| e["error"].as_str()).collect();
    assert_eq!(errors, vec!["451 4.3.0 Greylisted, retry", "451 4.3.0 Greylisted, retry"], "{}", job.text);
}

#[tokio::test]
async fn a_5xx_reply_makes_the_email_dead_at_once_with_the_reply_in_the_log() {
    let out = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(free_port(), out.path(), &["--reject-reply", "550 5.1.1 No such user here"]);
    let s = mail_server(sink.port);
    let t = s.setup_superuser().await;
    let id = send(&s, &t, raw("nobody@example.com", "Bounce")).await;
    let row = wait_log(&s, &t, &id, Duration::from_secs(20), state("dead")).await;
    assert_eq!(row["attempts"], 1, "no retry after a permanent failure: {row}");
    assert_eq!(row["lastReply"], "550 5.1.1 No such user here");
    assert!(row["sentAt"].is_null());
    let job = s.call("GET", &format!("/api/jobs/{id}"), Some(&t), None).await;
    assert_eq!(
        (job.body["state"].as_str(), job.body["attempt"].as_u64()),
        (Some("dead"), Some(1)),
        "{}",
        job.text
    );
    assert!(sink.messages().is_empty());
    let dead = s.call("GET", "/api/mail/log?state=dead", Some(&t), None).await;
    assert_eq!(dead.body["totalItems"], 1, "{}", dead.text);
}

#[tokio::test]
async fn email_queued_while_the_smtp_server_is_down_is_delivered_when_it_comes_back() {
    let out = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let s = mail_server(port);
    let t = s.setup_superuser().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(send(&s, &t, raw(&format!("user{i}@example.com"), &format!("Waiting {i}"))).await);
    }
    for id in &ids {
        let row = wait_log(&s, &t, id, Duration::from_secs(20), |r| {
            r["state"] == "retrying" && r["attempts"].as_u64() >= Some(2)
        })
        .await;
        let reply = row["lastReply"].as_str().unwrap_or_default();
        assert!(reply.contains(&format!("connecting to 127.0.0.1:{port}")), "{row}");
    }
    let sink = SmtpSink::start(port, out.path(), &[]);
    for id in &ids {
        wait_log(&s, &t, id, Duration::from_secs(20), state("sent")).await;
    }
    let mut got = subjects(&sink.messages());
    got.sort();
    assert_eq!(got, vec!["Waiting 0", "Waiting 1", "Waiting 2"], "each delivered once");
}

#[tokio::test]
async fn every_queued_email_is_delivered_after_the_smtp_server_is_sigkilled_and_restarted() {
    let out = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut sink = SmtpSink::start(port, out.path(), &[]);
    let s = mail_server(port);
    let t = s.setup_superuser().await;
    const N: usize = 40;
    let mut ids = Vec::new();
    for i in 0..N {
        ids.push(send(&s, &t, raw(&format!("bulk{i}@example.com"), &format!("Bulk {i:02}"))).await);
        if i == 5 {
            // Killed mid-stream: some emails are sent, some in flight, most still queued.
            sink.kill9();
        }
    }
    let before_restart = read_messages(out.path()).len();
    assert!(before_restart < N, "the kill must interrupt delivery ({before_restart} of {N} arrived)");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sink = SmtpSink::start(port, out.path(), &[]);
    let mut retried = 0;
    for id in &ids {
        let row = wait_log(&s, &t, id, Duration::from_secs(30), state("sent")).await;
        if row["attempts"].as_u64() > Some(1) {
            retried += 1;
        }
    }
    assert!(retried >= N - 10, "emails queued while the server was dead needed retries ({retried} did)");
    let mut got = subjects(&sink.messages());
    got.sort();
    got.dedup();
    let want: Vec<String> = (0..N).map(|i| format!("Bulk {i:02}")).collect();
    assert_eq!(
        got, want,
        "every email arrived (at-least-once: a message the sink stored just before the kill may repeat)"
    );
}

#[tokio::test]
async fn line_breaks_in_header_values_and_bad_addresses_are_400_field_errors() {
    let s = mail_server(free_port());
    let t = s.setup_superuser().await;
    let cases = [
        (
            json!({"to": "a@example.com", "subject": "Hi\r\nBcc: victim@example.com", "text": "x"}),
            "subject",
            "validation_header_injection",
        ),
        (
            json!({"to": "a@example.com\r\nBcc: victim@example.com", "subject": "Hi", "text": "x"}),
            "to",
            "validation_header_injection",
        ),
        (
            json!({"to": "a@example.com", "toName": "Ann\nBcc: v@example.com", "subject": "Hi", "text": "x"}),
            "toName",
            "validation_header_injection",
        ),
        (json!({"to": "not-an-address", "subject": "Hi", "text": "x"}), "to", "validation_invalid_email"),
        (json!({"subject": "Hi", "text": "x"}), "to", "validation_required"),
        (json!({"to": "a@example.com", "text": "x"}), "subject", "validation_required"),
        (json!({"to": "a@example.com", "template": "nope"}), "template", "validation_unknown_template"),
        (json!({"to": "a@example.com", "template": "otp", "subject": "x"}), "subject", "validation_conflict"),
        (
            json!({"to": "a@example.com", "template": "otp", "locale": "xx_YY"}),
            "locale",
            "validation_invalid_locale",
        ),
        (
            json!({"to": "a@example.com", "subject": "Hi", "text": "x", "bcc": "v@example.com"}),
            "bcc",
            "validation_unknown_field",
        ),
        // A variable with a line break that lands in the rendered subject.
        (
            json!({"to": "a@example.com", "template": "alert", "vars": {"title": "Disk\r\nBcc: v@example.com"}}),
            "subject",
            "validation_header_injection",
        ),
    ];
    for (body, field, code) in cases {
        s.call("POST", "/api/mail/send", Some(&t), Some(body.clone()))
            .await
            .assert_problem(400)
            .assert_field_error(field, code);
    }
    s.raw("POST", "/api/mail/send", Some(&t), Some("application/json"), b"{not json".to_vec())
        .await
        .assert_problem(400);
    let r = s
        .call(
            "PATCH",
            "/api/settings",
            Some(&t),
            Some(json!({"meta": {"senderName": "Robot\r\nBcc: v@example.com"}})),
        )
        .await;
    r.assert_problem(400).assert_field_error("meta.senderName", "validation_header_injection");
    let log = s.call("GET", "/api/mail/log", Some(&t), None).await;
    assert_eq!(log.body["totalItems"], 0, "nothing refused was queued: {}", log.text);
}

#[tokio::test]
async fn settings_are_superuser_only_validated_persisted_and_never_return_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start_in(dir.path(), StartOptions { env: mail_env(2525), args: vec![] });
    let t = s.setup_superuser().await;
    s.call("GET", "/api/settings", None, None).await.assert_problem(401);
    s.call("PATCH", "/api/settings", None, Some(json!({}))).await.assert_problem(401);
    s.call("POST", "/api/mail/send", None, Some(raw("a@example.com", "x"))).await.assert_problem(401);
    s.call("GET", "/api/mail/log", None, None).await.assert_problem(401);
    s.call("POST", "/api/settings/test/email", None, Some(json!({"email": "a@example.com"})))
        .await
        .assert_problem(401);

    // Signed-in non-superusers get 403 from the same check (`Principal::Record`); this
    // branch cannot create auth collections yet, so only anonymous callers are exercised.
    let r = s.call("GET", "/api/settings", Some(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["smtp"]["port"], 2525, "config values show: {}", r.text);
    assert_eq!(r.body["meta"]["appName"], "Acme & Co");
    assert_eq!(
        (r.body["smtp"]["security"].as_str(), r.body["smtp"]["tls"].as_bool()),
        (Some("none"), Some(false))
    );

    let r = s
        .call(
            "PATCH",
            "/api/settings",
            Some(&t),
            Some(json!({"smtp": {"host": "smtp.example.net", "port": 465, "tls": true, "username": "mailer", "password": "s3cret-pass"}, "meta": {"senderAddress": "hello@acme.test"}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!r.text.contains("s3cret-pass"), "PATCH must not echo the password: {}", r.text);
    assert_eq!(r.body["smtp"]["security"], "tls", "PocketBase's tls: true means implicit TLS");
    for bad in [
        (json!({"smtp": {"port": 0}}), "smtp.port"),
        (json!({"smtp": {"security": "ssl"}}), "smtp.security"),
        (json!({"smtp": {"authMethod": "CRAM"}}), "smtp.authMethod"),
        (json!({"meta": {"senderAddress": "nope"}}), "meta.senderAddress"),
        (json!({"meta": {"appURL": "ftp://x"}}), "meta.appURL"),
        (json!({"templates": {"unknown": {}}}), "templates.unknown"),
        (json!({"templates": {"otp": {"en": {"subject": "", "text": "x"}}}}), "templates.otp.en"),
        (json!({"backups": {}}), "backups"),
    ] {
        s.call("PATCH", "/api/settings", Some(&t), Some(bad.0)).await.assert_problem(400).assert_field_error(
            bad.1,
            match bad.1 {
                "smtp.port" => "validation_invalid_number",
                "meta.senderAddress" => "validation_invalid_email",
                "meta.appURL" => "validation_invalid_url",
                "templates.unknown" => "validation_unknown_template",
                "templates.otp.en" => "validation_required",
                "backups" => "validation_unknown_field",
                _ => "validation_invalid_value",
            },
        );
    }
    // Persisted across a restart, and still never returned.
    assert_eq!(s.terminate(), Some(0));
    let s = Server::start_in(dir.path(), StartOptions { env: mail_env(2525), args: vec![] });
    let t = s.login().await;
    let r = s.call("GET", "/api/settings", Some(&t), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["smtp"]["host"], "smtp.example.net");
    assert_eq!(r.body["smtp"]["port"], 465);
    assert_eq!(r.body["smtp"]["username"], "mailer");
    assert_eq!(r.body["meta"]["senderAddress"], "hello@acme.test");
    assert!(r.body["smtp"].get("password").is_none(), "{}", r.text);
    assert!(!r.text.contains("s3cret-pass"), "{}", r.text);
}

#[tokio::test]
async fn test_emails_from_the_api_and_the_cli_are_delivered_and_refused_while_smtp_is_off() {
    let out = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(free_port(), out.path(), &[]);
    let s = mail_server(sink.port);
    let t = s.setup_superuser().await;
    let r = s.call("PATCH", "/api/settings", Some(&t), Some(json!({"smtp": {"enabled": false}}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    s.call("POST", "/api/settings/test/email", Some(&t), Some(json!({"email": "ops@example.com"})))
        .await
        .assert_problem(400);
    s.call("PATCH", "/api/settings", Some(&t), Some(json!({"smtp": {"enabled": true}}))).await;
    s.call(
        "POST",
        "/api/settings/test/email",
        Some(&t),
        Some(json!({"email": "ops@example.com", "template": "nope"})),
    )
    .await
    .assert_problem(400)
    .assert_field_error("template", "validation_unknown_template");
    let r = s
        .call(
            "POST",
            "/api/settings/test/email",
            Some(&t),
            Some(json!({"email": "ops@example.com", "template": "otp"})),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let id = r.body["id"].as_str().expect("id").to_string();
    wait_log(&s, &t, &id, Duration::from_secs(20), state("sent")).await;

    let output = command()
        .arg("send-test-email")
        .arg("cli@example.com")
        .arg("--template")
        .arg("password-reset")
        .arg("--dir")
        .arg(&s.dir)
        .output()
        .expect("run backbone");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(stdout.contains("queued as job"), "{stdout}");
    let messages = wait_messages(out.path(), 2, Duration::from_secs(20)).await;
    let m = messages.iter().find(|m| m["rcptTos"][0] == "cli@example.com").expect("the CLI's email");
    assert_eq!(m["headers"]["Subject"], "Reset your Acme & Co password");
    let m = messages.iter().find(|m| m["rcptTos"][0] == "ops@example.com").expect("the API's email");
    assert_eq!(m["headers"]["Subject"], "Your Acme & Co sign-in code");
    assert!(m["text"].as_str().unwrap_or_default().contains("123456"));
}

#[tokio::test]
async fn the_cli_queues_a_test_email_offline_and_the_next_serve_delivers_it() {
    let out = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(free_port(), out.path(), &[]);
    let mut cmd = command();
    for (k, v) in mail_env(sink.port) {
        cmd.env(k, v);
    }
    let output = cmd
        .arg("send-test-email")
        .arg("offline@example.com")
        .arg("--dir")
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("sent when `backbone serve` starts"));
    assert!(sink.messages().is_empty(), "nothing is sent without a server");
    let _s = Server::start_in(dir.path(), StartOptions { env: mail_env(sink.port), args: vec![] });
    let messages = wait_messages(out.path(), 1, Duration::from_secs(20)).await;
    assert_eq!(messages[0]["rcptTos"], json!(["offline@example.com"]));
    assert_eq!(messages[0]["headers"]["Subject"], "Verify your Acme & Co email");
}

#[tokio::test]
async fn the_log_pages_newest_first_and_filters_by_state_and_recipient() {
    let out = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(free_port(), out.path(), &[]);
    let s = mail_server(sink.port);
    let t = s.setup_superuser().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let to = if i % 2 == 0 { "even@example.com" } else { "odd@example.com" };
        ids.push(send(&s, &t, raw(to, &format!("Log {i}"))).await);
    }
    for id in &ids {
        wait_log(&s, &t, id, Duration::from_secs(20), state("sent")).await;
    }
    let page = s.call("GET", "/api/mail/log?perPage=2", Some(&t), None).await;
    assert_eq!(
        (page.body["totalItems"].as_u64(), page.body["totalPages"].as_u64()),
        (Some(5), Some(3)),
        "{}",
        page.text
    );
    let first: Vec<&str> =
        page.body["items"].as_array().expect("items").iter().filter_map(|i| i["subject"].as_str()).collect();
    assert_eq!(first, vec!["Log 4", "Log 3"], "newest first");
    let page3 = s.call("GET", "/api/mail/log?perPage=2&page=3", Some(&t), None).await;
    assert_eq!(page3.body["items"][0]["subject"], "Log 0");
    let odd = s.call("GET", "/api/mail/log?to=ODD@example.com", Some(&t), None).await;
    assert_eq!(odd.body["totalItems"], 2, "{}", odd.text);
    let sent = s.call("GET", "/api/mail/log?state=sent", Some(&t), None).await;
    assert_eq!(sent.body["totalItems"], 5);
    let dead = s.call("GET", "/api/mail/log?state=dead", Some(&t), None).await;
    assert_eq!(dead.body["totalItems"], 0);
    let one = s.call("GET", &format!("/api/mail/log/{}", ids[1]), Some(&t), None).await;
    assert_eq!((one.status, one.body["subject"].as_str()), (200, Some("Log 1")), "{}", one.text);
    s.call("GET", "/api/mail/log/123", Some(&t), None).await.assert_problem(404);
    s.call("GET", "/api/mail/log/abc", Some(&t), None).await.assert_problem(404);
    s.call("GET", &format!("/api/mail/log/{}", ids[1]), None, None).await.assert_problem(401);
    s.call("GET", "/api/mail/log?state=lost", Some(&t), None).await.assert_problem(400);
    s.call("GET", "/api/mail/log?page=0", Some(&t), None).await.assert_problem(400);
}

/// A throwaway CA and a certificate for 127.0.0.1 signed by it (openssl CLI); returns
/// (ca.pem, cert.pem, key.pem).
fn make_certificates(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    crate::common::setup::require_command("openssl", "openssl");
    let run = |args: &[&str]| {
        let out =
            std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Backbone Test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "key.pem",
        "-out",
        "cert.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "cert.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
    (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"))
}

#[tokio::test]
async fn starttls_and_implicit_tls_deliver_with_a_verified_certificate_and_never_downgrade() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = make_certificates(certs.path());
    let (cert, key) = (cert.to_string_lossy().to_string(), key.to_string_lossy().to_string());
    let out = tempfile::tempdir().expect("tempdir");
    let starttls = SmtpSink::start(
        free_port(),
        out.path(),
        &["--tls-mode", "starttls", "--tls-cert", &cert, "--tls-key", &key],
    );
    let implicit = SmtpSink::start(
        free_port(),
        out.path(),
        &["--tls-mode", "implicit", "--tls-cert", &cert, "--tls-key", &key],
    );
    let plain = SmtpSink::start(free_port(), out.path(), &[]);
    let mut env = mail_env(starttls.port);
    env.push(("SSL_CERT_FILE".into(), ca.to_string_lossy().to_string()));
    let s = Server::start_with(StartOptions { env, args: vec![] });
    let t = s.setup_superuser().await;
    let configure = |port: u16, security: &str| json!({"smtp": {"port": port, "security": security}});

    s.call("PATCH", "/api/settings", Some(&t), Some(configure(starttls.port, "starttls"))).await;
    let id = send(&s, &t, raw("tls1@example.com", "Over STARTTLS")).await;
    wait_log(&s, &t, &id, Duration::from_secs(20), state("sent")).await;

    s.call("PATCH", "/api/settings", Some(&t), Some(configure(implicit.port, "tls"))).await;
    let id = send(&s, &t, raw("tls2@example.com", "Over implicit TLS")).await;
    wait_log(&s, &t, &id, Duration::from_secs(20), state("sent")).await;

    // STARTTLS required but not offered: retried with the reason, never sent in the clear.
    s.call("PATCH", "/api/settings", Some(&t), Some(configure(plain.port, "starttls"))).await;
    let id = send(&s, &t, raw("tls3@example.com", "Must not go in clear text")).await;
    let row = wait_log(&s, &t, &id, Duration::from_secs(20), state("retrying")).await;
    assert!(row["lastReply"].as_str().unwrap_or_default().contains("STARTTLS"), "{row}");
    assert!(plain.messages().iter().all(|m| m["headers"]["Subject"] != "Must not go in clear text"));
    let got = subjects(&read_messages(out.path()));
    assert!(
        got.contains(&"Over STARTTLS".to_string()) && got.contains(&"Over implicit TLS".to_string()),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_refused_and_retried() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (_ca, cert, key) = make_certificates(certs.path());
    let (cert, key) = (cert.to_string_lossy().to_string(), key.to_string_lossy().to_string());
    let out = tempfile::tempdir().expect("tempdir");
    let sink = SmtpSink::start(
        free_port(),
        out.path(),
        &["--tls-mode", "implicit", "--tls-cert", &cert, "--tls-key", &key],
    );
    let s = mail_server(sink.port);
    let t = s.setup_superuser().await;
    s.call("PATCH", "/api/settings", Some(&t), Some(json!({"smtp": {"security": "tls"}}))).await;
    let id = send(&s, &t, raw("x@example.com", "Untrusted")).await;
    let row = wait_log(&s, &t, &id, Duration::from_secs(20), |r| r["state"] == "retrying").await;
    assert!(row["lastReply"].as_str().unwrap_or_default().to_lowercase().contains("certificate"), "{row}");
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn email_queued_before_the_server_is_sigkilled_is_delivered_after_it_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut s = Server::start_in(dir.path(), StartOptions { env: mail_env(port), args: vec![] });
    let t = s.setup_superuser().await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(send(&s, &t, raw(&format!("crash{i}@example.com"), &format!("Crash {i}"))).await);
    }
    // Every 202 means the email is on disk; the SMTP server is down, so none went out.
    s.kill9();
    let sink = SmtpSink::start(port, out.path(), &[]);
    let s = Server::start_in(dir.path(), StartOptions { env: mail_env(port), args: vec![] });
    let t = s.login().await;
    for id in &ids {
        wait_log(&s, &t, id, Duration::from_secs(30), state("sent")).await;
    }
    let mut got = subjects(&sink.messages());
    got.sort();
    let want: Vec<String> = (0..10).map(|i| format!("Crash {i}")).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_failed_delivery_is_logged_at_warn_with_its_job_id_in_plain_text() {
    // Nothing listens on the port: every attempt fails. The log goes to a file, as when an
    // operator redirects stderr, so it must carry no colour codes.
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("server.log");
    let s = Server::start_logging_to(StartOptions { env: mail_env(free_port()), args: vec![] }, &log);
    let t = s.setup_superuser().await;
    let id = send(&s, &t, raw("ann@example.com", "Unlucky")).await;
    let deadline = Instant::now() + crate::common::PATIENCE;
    let line = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("email delivery failed")) {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "no delivery failure in the server log:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains(&format!("job={id}")), "the job id is in the line: {line}");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains('\u{1b}'), "colour codes in a redirected log:\n{text}");
}
