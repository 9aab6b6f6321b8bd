//! Unit tests of the mail service over a real store and queue (no workers, no SMTP):
//! transactional enqueue, rendering into the job payload, settings writes.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::*;
use crate::jobs::clock::SystemClock;
use crate::store::{Store, StoreOptions};

struct Fixture {
    _dir: tempfile::TempDir,
    mail: Mail,
    jobs: Jobs,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    let store = tokio::task::spawn_blocking(move || Store::open(&path, &StoreOptions::default()))
        .await
        .expect("join")
        .expect("open store");
    let config = Config::default();
    let mut registry = Registry::with_builtins(false);
    let prepared = Mail::prepare(store.clone(), &config, &mut registry).await.expect("prepare mail");
    let jobs =
        Jobs::open(store, config.jobs.clone(), registry, Arc::new(SystemClock)).await.expect("open jobs");
    Fixture { _dir: dir, mail: Mail::new(prepared, jobs.clone()), jobs }
}

fn vars(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

async fn counts(f: &Fixture) -> (u64, u64) {
    f.jobs
        .store()
        .read(|tx| Ok::<_, StoreError>((tx.len(Table::Jobs)?, tx.len(Table::MailLog)?)))
        .await
        .expect("read")
}

#[tokio::test]
async fn enqueue_in_commits_with_the_callers_write_or_vanishes_with_it() {
    let f = fixture().await;
    let mail = f.mail.clone();
    // The caller's write fails after queueing the email: neither job nor log row remains.
    let result = f
        .jobs
        .store()
        .write(move |tx: &mut WriteTx<'_>| {
            tx.put(Table::Meta, b"test-data-change", b"1".to_vec());
            mail.enqueue_in(
                tx,
                OutgoingMail::template("a@example.com", Template::Otp, vars(json!({"otp": "1"}))),
            )?;
            Err::<(), MailError>(MailError::BadRequest("the data change was refused".into()))
        })
        .await;
    assert!(result.is_err());
    assert_eq!(counts(&f).await, (0, 0));
    // The same write succeeding: the data change, the job and the log row commit together.
    let mail = f.mail.clone();
    let id = f
        .jobs
        .store()
        .write(move |tx: &mut WriteTx<'_>| {
            tx.put(Table::Meta, b"test-data-change", b"1".to_vec());
            mail.enqueue_in(
                tx,
                OutgoingMail::template("a@example.com", Template::Otp, vars(json!({"otp": "987654"}))),
            )
        })
        .await
        .expect("commit");
    assert_eq!(counts(&f).await, (1, 1));
    let job = f.jobs.get(id.0).await.expect("job");
    assert_eq!((job.kind.as_str(), job.queue.as_str()), (JOB_KIND, QUEUE));
    assert_eq!(job.max_attempts, Config::default().mail.max_attempts);
    assert_eq!(job.payload["subject"], "Your Backbone sign-in code", "rendered at enqueue time");
    assert!(job.payload["text"].as_str().unwrap_or_default().contains("987654"));
    let row = f.mail.log_entry(id).await.expect("log").expect("row");
    assert_eq!((row["state"].as_str(), row["to"].as_str()), (Some("queued"), Some("a@example.com")));
}

#[tokio::test]
async fn a_refused_email_is_refused_before_anything_is_written() {
    let f = fixture().await;
    let bad = OutgoingMail {
        to: "a@example.com".into(),
        to_name: None,
        locale: None,
        content: Content::Raw { subject: "a\nb".into(), html: None, text: "x".into() },
    };
    let err = f.mail.enqueue(bad).await.expect_err("injection");
    assert!(
        matches!(err, MailError::Validation(ref invalid) if invalid.fields.contains_key("subject")),
        "{err:?}"
    );
    assert_eq!(counts(&f).await, (0, 0));
}

#[tokio::test]
async fn settings_updates_report_what_changed_without_secret_values_and_apply_to_new_email() {
    let f = fixture().await;
    let patch = vars(json!({
        "meta": {"appName": "Renamed"},
        "smtp": {"password": "hunter2", "port": 2525, "host": "127.0.0.1"},
    }));
    let (settings, change) = f.mail.update_settings(patch, None).await.expect("update");
    assert_eq!(settings.meta.app_name, "Renamed");
    assert_eq!(change.changed, vec!["meta.appName", "smtp.password", "smtp.port"], "host was unchanged");
    assert!(!format!("{change:?}").contains("hunter2"));
    assert!(!settings.to_json().to_string().contains("hunter2"));
    assert_eq!(f.mail.settings().smtp.password, "hunter2", "kept for the transport");
    let id = f
        .mail
        .enqueue(OutgoingMail::template("a@example.com", Template::Otp, vars(json!({"otp": "1"}))))
        .await
        .expect("enqueue");
    assert_eq!(f.jobs.get(id.0).await.expect("job").payload["subject"], "Your Renamed sign-in code");
}

#[tokio::test]
async fn log_retention_deletes_only_a_few_of_the_oldest_rows_and_never_the_current_one() {
    let f = fixture().await;
    let row = |created: i64| log::LogRow {
        to: "a@example.com".into(),
        to_name: None,
        subject: "s".into(),
        template: None,
        locale: None,
        state: DeliveryState::Sent,
        attempts: 1,
        last_reply: None,
        created,
        updated: created,
        sent_at: None,
    };
    let ids: Vec<u64> = (1..=6u64).map(|ms| (1_000 * ms) << 10).collect();
    let (ids2, keep) = (ids.clone(), ids[0]);
    let pruned = f
        .jobs
        .store()
        .write(move |tx: &mut WriteTx<'_>| {
            for (i, id) in ids2.iter().enumerate() {
                log::insert(tx, *id, &row(1_000 * (i as i64 + 1)))?;
            }
            // Cutoff 4.5 s: rows at 1..4 s are old; at most 2 go, and never `keep`.
            log::prune(tx, 4_500, keep, 2)
        })
        .await
        .expect("prune");
    assert_eq!(pruned, 2);
    let left = f
        .jobs
        .store()
        .read(|tx| {
            let mut left = Vec::new();
            tx.scan_prefix(Table::MailLog, b"", false, None, |k, _| {
                left.push(u64::from_be_bytes(<[u8; 8]>::try_from(k).unwrap_or_default()));
                crate::store::ScanControl::Continue
            })?;
            Ok::<_, StoreError>(left)
        })
        .await
        .expect("read");
    assert_eq!(left, vec![ids[0], ids[3], ids[4], ids[5]]);
}

#[test]
fn a_send_body_reports_every_problem_summarized_by_the_first() {
    let err = OutgoingMail::from_json(&vars(json!({"toName": 5, "subject": " "}))).expect_err("invalid");
    let MailError::Validation(invalid) = err else { panic!("expected a validation failure, got {err:?}") };
    assert_eq!(invalid.message, "Cannot be blank.");
    assert_eq!(
        invalid.codes(),
        [
            ("subject", "validation_required"),
            ("text", "validation_required"),
            ("to", "validation_required"),
            ("toName", "validation_invalid_type"),
        ]
    );
    let mail = OutgoingMail::from_json(&vars(
        json!({"to": "a@example.com", "template": "otp", "vars": {"otp": "1"}, "html": null}),
    ))
    .expect("valid");
    assert_eq!(mail.content, Content::Template { template: Template::Otp, vars: vars(json!({"otp": "1"})) });
    assert_eq!(
        test_email_input(&vars(json!({"email": "a@example.com", "collection": "users"}))).expect("valid"),
        ("a@example.com".to_string(), None)
    );
    let err = test_email_input(&vars(json!({"email": 1}))).expect_err("type");
    assert!(matches!(&err, MailError::Validation(i) if i.message == "Must be a string."), "{err:?}");
}

#[tokio::test]
async fn a_settings_patch_reports_every_problem_and_writes_nothing() {
    let f = fixture().await;
    let patch = vars(json!({
        "meta": {"appName": null, "colour": "red"},
        "smtp": {"port": 0, "tls": "yes"},
        "backups": {},
    }));
    let err = f.mail.update_settings(patch, None).await.expect_err("invalid");
    let MailError::Validation(invalid) = err else { panic!("expected a validation failure, got {err:?}") };
    assert_eq!(
        invalid.codes(),
        [
            ("backups", "validation_unknown_field"),
            ("meta.appName", "validation_invalid_type"),
            ("meta.colour", "validation_unknown_field"),
            ("smtp.port", "validation_invalid_number"),
            ("smtp.tls", "validation_invalid_type"),
        ]
    );
    assert_eq!(invalid.message, "Must be a string.", "summarized by the first problem noted");
    assert_eq!(f.mail.settings().meta.app_name, Config::default().mail.app_name);
}
