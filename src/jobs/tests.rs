//! Unit tests of the job queue: transactional enqueue, claim order, state transitions with
//! an injected clock, backoff, unique keys, orphan recovery, retention and cron catch-up.

use std::sync::Arc;

use serde_json::json;

use super::clock::ManualClock;
use super::cron::fire_due;
use super::model::{backoff_ms, JobState};
use super::worker::{claim, finish_one, prune, recover_orphans, Finish, Outcome};
use super::*;
use crate::store::{Store, StoreOptions};

const T0: i64 = 1_800_000_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    jobs: Jobs,
    clock: Arc<ManualClock>,
}

async fn fixture() -> Fixture {
    fixture_with(Registry::with_builtins(true)).await
}

async fn fixture_with(registry: Registry) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data.redb");
    let store = tokio::task::spawn_blocking(move || Store::open(&path, &StoreOptions::default()))
        .await
        .expect("join")
        .expect("open store");
    let clock = Arc::new(ManualClock::new(T0));
    let config =
        crate::config::JobsSection { backoff_base_ms: 1000, backoff_max_ms: 60_000, ..Default::default() };
    let jobs = Jobs::open(store, config, registry, clock.clone()).await.expect("open jobs");
    Fixture { _dir: dir, jobs, clock }
}

impl Fixture {
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Jobs, &mut WriteTx<'_>) -> Result<T, JobsError> + Send + 'static,
    ) -> Result<T, JobsError> {
        let jobs = self.jobs.clone();
        self.jobs.store().write(move |tx: &mut WriteTx<'_>| f(&jobs, tx)).await
    }

    async fn claim(&self, queue: &str, want: usize) -> (Vec<Job>, Option<i64>) {
        let (queue, now) = (queue.to_string(), self.clock.now_ms());
        self.write(move |_, tx| claim(tx, &queue, want, now)).await.expect("claim")
    }
}

#[test]
fn backoff_doubles_is_capped_and_jitter_adds_at_most_ten_percent() {
    assert_eq!(backoff_ms(1, 1000, 60_000, 0.0), 1000);
    assert_eq!(backoff_ms(2, 1000, 60_000, 0.0), 2000);
    assert_eq!(backoff_ms(5, 1000, 60_000, 0.0), 16_000);
    assert_eq!(backoff_ms(7, 1000, 60_000, 0.0), 60_000, "capped");
    assert_eq!(backoff_ms(200, 1000, 60_000, 0.0), 60_000, "no overflow");
    assert_eq!(backoff_ms(3, 1000, 60_000, 1.0), 4400);
    let jittered = backoff_ms(3, 1000, 60_000, 0.5);
    assert!((4000..=4400).contains(&jittered), "{jittered}");
}

#[tokio::test]
async fn transactional_enqueue_commits_or_vanishes_with_its_write() {
    let f = fixture().await;
    // The write fails after enqueueing: neither its data nor its job exist.
    let failed = f
        .write(|jobs, tx| {
            tx.put(Table::Meta, b"test_marker", b"1".to_vec());
            jobs.enqueue_in(tx, JobSpec::new("noop", json!({"n": 1})))?;
            Err::<(), _>(JobsError::Conflict("domain validation failed".into()))
        })
        .await;
    assert!(failed.is_err());
    let page = f.jobs.list(ListFilter::default()).await.expect("list");
    assert_eq!(page.total_items, 0, "the job of a failed write must not exist");
    // The same write succeeding: both exist.
    let id = f
        .write(|jobs, tx| {
            tx.put(Table::Meta, b"test_marker", b"1".to_vec());
            Ok(jobs.enqueue_in(tx, JobSpec::new("noop", json!({"n": 2})))?.job.id)
        })
        .await
        .expect("write");
    let job = f.jobs.get(id).await.expect("job exists");
    assert_eq!(job.state, JobState::Available);
    assert_eq!(job.payload, json!({"n": 2}));
    let marker = f.jobs.store().read(|tx| tx.get(Table::Meta, b"test_marker")).await.expect("read");
    assert_eq!(marker, Some(b"1".to_vec()));
}

#[tokio::test]
async fn enqueue_refuses_unknown_kinds_and_bad_options() {
    let f = fixture().await;
    for (spec, field) in [
        (JobSpec::new("nope", json!({})), "kind"),
        (JobSpec::new("noop", json!({})).priority(10), "priority"),
        (JobSpec::new("noop", json!({})).queue("bad queue"), "queue"),
        (JobSpec::new("noop", json!({})).max_attempts(0), "maxAttempts"),
        (JobSpec::new("noop", json!({})).unique_key(""), "uniqueKey"),
    ] {
        match f.jobs.enqueue(spec).await {
            Err(JobsError::Validation(invalid)) => {
                assert_eq!(invalid.fields.keys().collect::<Vec<_>>(), [field]);
                assert_eq!(invalid.message, invalid.fields[field].message, "summarized by the problem");
            }
            other => panic!("expected an invalid {field}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn claim_takes_due_jobs_by_priority_then_run_at_and_reports_the_next_due_time() {
    let f = fixture().await;
    let low = f.jobs.enqueue(JobSpec::new("noop", json!({})).priority(5)).await.expect("e").job.id;
    let high = f.jobs.enqueue(JobSpec::new("noop", json!({})).priority(0)).await.expect("e").job.id;
    let later = f.jobs.enqueue(JobSpec::new("noop", json!({})).run_at(T0 + 5000)).await.expect("e").job;
    let other_queue = f.jobs.enqueue(JobSpec::new("noop", json!({})).queue("other")).await.expect("e").job.id;
    assert_eq!(later.state, JobState::Scheduled);
    let (claimed, next) = f.claim("default", 10).await;
    let ids: Vec<u64> = claimed.iter().map(|j| j.id).collect();
    assert_eq!(ids, vec![high, low], "priority 0 first; the future job and other queues are not taken");
    assert!(claimed.iter().all(|j| j.state == JobState::Running && j.attempt == 1));
    assert_eq!(next, Some(T0 + 5000));
    assert!(!ids.contains(&other_queue));
    // Nothing more is due until the clock reaches run_at.
    assert!(f.claim("default", 10).await.0.is_empty());
    f.clock.advance(5000);
    let (claimed, next) = f.claim("default", 10).await;
    assert_eq!(claimed.iter().map(|j| j.id).collect::<Vec<_>>(), vec![later.id]);
    assert_eq!(next, None);
    // `want` bounds a claim (concurrency slots).
    for _ in 0..3 {
        f.jobs.enqueue(JobSpec::new("noop", json!({}))).await.expect("e");
    }
    assert_eq!(f.claim("default", 2).await.0.len(), 2);
    assert_eq!(f.claim("default", 2).await.0.len(), 1);
}

#[tokio::test]
async fn unique_keys_dedupe_while_waiting_or_running_and_free_up_when_finished() {
    let f = fixture().await;
    let spec = || JobSpec::new("noop", json!({})).unique_key("report:42");
    let first = f.jobs.enqueue(spec()).await.expect("first");
    assert!(!first.duplicate);
    let second = f.jobs.enqueue(spec()).await.expect("second");
    assert!(second.duplicate);
    assert_eq!(second.job.id, first.job.id);
    let (claimed, _) = f.claim("default", 1).await;
    assert_eq!(claimed[0].id, first.job.id);
    assert!(f.jobs.enqueue(spec()).await.expect("while running").duplicate);
    f.jobs.cancel(first.job.id).await.expect("cancel orphan-like running job");
    let third = f.jobs.enqueue(spec()).await.expect("after finish");
    assert!(!third.duplicate);
    assert_ne!(third.job.id, first.job.id);
    // Replaying the finished first job now conflicts with the live third one.
    assert!(matches!(f.jobs.retry(first.job.id).await, Err(JobsError::Conflict(_))));
}

#[tokio::test]
async fn orphans_found_running_are_requeued_with_the_attempt_counted_or_killed_when_out_of_attempts() {
    let f = fixture().await;
    let keep = f.jobs.enqueue(JobSpec::new("noop", json!({})).max_attempts(3)).await.expect("e").job.id;
    let last = f.jobs.enqueue(JobSpec::new("noop", json!({})).max_attempts(1)).await.expect("e").job.id;
    assert_eq!(f.claim("default", 10).await.0.len(), 2);
    f.clock.advance(10);
    let now = f.clock.now_ms();
    let recovered = f.write(move |_, tx| recover_orphans(tx, now)).await.expect("recover");
    assert_eq!(recovered.len(), 2);
    let kept = f.jobs.get(keep).await.expect("job");
    assert_eq!((kept.state, kept.attempt, kept.run_at), (JobState::Available, 1, now));
    assert!(kept.last_error().unwrap_or_default().contains("orphaned"));
    let dead = f.jobs.get(last).await.expect("job");
    assert_eq!(dead.state, JobState::Dead);
    // Runnable at once.
    assert_eq!(f.claim("default", 10).await.0.iter().map(|j| j.id).collect::<Vec<_>>(), vec![keep]);
}

#[tokio::test]
async fn cancel_delete_and_retry_follow_the_state_rules() {
    let f = fixture().await;
    let id = f.jobs.enqueue(JobSpec::new("noop", json!({})).run_at(T0 + 60_000)).await.expect("e").job.id;
    let cancelled = f.jobs.cancel(id).await.expect("cancel waiting");
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert!(matches!(f.jobs.cancel(id).await, Err(JobsError::Conflict(_))), "already finished");
    assert!(f.claim("default", 10).await.0.is_empty(), "a cancelled job is never claimed");
    let replayed = f.jobs.retry(id).await.expect("replay");
    assert_eq!((replayed.state, replayed.attempt, replayed.run_at), (JobState::Available, 0, T0));
    let (claimed, _) = f.claim("default", 10).await;
    assert_eq!(claimed.len(), 1);
    assert!(matches!(f.jobs.delete(id).await, Err(JobsError::Conflict(_))), "running");
    assert!(matches!(f.jobs.retry(id).await, Err(JobsError::Conflict(_))), "running");
    assert!(matches!(f.jobs.get(u64::MAX).await, Err(JobsError::NotFound(_))));
}

#[tokio::test]
async fn retention_prunes_finished_jobs_only_after_their_keep_time() {
    let f = fixture().await;
    let done = f.jobs.enqueue(JobSpec::new("noop", json!({}))).await.expect("e").job.id;
    let waiting =
        f.jobs.enqueue(JobSpec::new("noop", json!({})).run_at(T0 + 1_000_000)).await.expect("e").job.id;
    f.jobs.cancel(done).await.expect("cancel");
    let now = f.clock.now_ms();
    let (deleted, next) = f.write(move |_, tx| prune(tx, now, 1000, 5000)).await.expect("prune");
    assert_eq!(deleted, 0);
    assert_eq!(next, Some(T0 + 5000), "cancelled jobs are kept keep_failed long");
    f.clock.advance(5000);
    let now = f.clock.now_ms();
    let (deleted, next) = f.write(move |_, tx| prune(tx, now, 1000, 5000)).await.expect("prune");
    assert_eq!((deleted, next), (1, None));
    assert!(matches!(f.jobs.get(done).await, Err(JobsError::NotFound(_))));
    assert!(f.jobs.get(waiting).await.is_ok(), "waiting jobs are never pruned");
    let stats = f.jobs.stats().await.expect("stats");
    assert_eq!(stats.total, 1);
}

#[tokio::test]
async fn cron_catches_up_a_missed_run_once_and_never_fires_twice() {
    let f = fixture().await;
    // Every minute, from T0 (T0 is a whole minute: 1_800_000_000_000 ms = ...:20:00).
    let cron = f
        .jobs
        .create_cron(
            json!({"name": "minutely", "expression": "* * * * *", "kind": "noop"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
        .await
        .expect("create");
    let first_due = cron.next_run_at.expect("enabled schedules have a next run");
    assert!(first_due > T0 && first_due <= T0 + 60_000);
    // Not due yet: nothing fires.
    let now = f.clock.now_ms();
    f.write(move |jobs, tx| fire_due(jobs, tx, now)).await.expect("tick");
    assert_eq!(f.jobs.cron_runs(&cron.id, None, None).await.expect("runs").2, 0);
    // Ten minutes of downtime: exactly one catch-up run.
    f.clock.advance(10 * 60_000 + 5_000);
    let now = f.clock.now_ms();
    let next = f.write(move |jobs, tx| fire_due(jobs, tx, now)).await.expect("tick");
    let next = next.expect("next run");
    assert!(next > now && next <= now + 60_000, "the next run is the first occurrence after now");
    let (_, _, total, runs) = f.jobs.cron_runs(&cron.id, None, None).await.expect("runs");
    assert_eq!(total, 1, "missed runs are caught up once");
    assert!(runs[0].caught_up);
    assert_eq!(runs[0].scheduled_for, first_due);
    // Ticking again at the same instant (e.g. a second wake-up) fires nothing.
    f.write(move |jobs, tx| fire_due(jobs, tx, now)).await.expect("tick");
    assert_eq!(f.jobs.cron_runs(&cron.id, None, None).await.expect("runs").2, 1, "no double fire");
    let page =
        f.jobs.list(ListFilter { kind: Some("noop".into()), ..Default::default() }).await.expect("list");
    assert_eq!(page.total_items, 1, "one job enqueued by the catch-up run");
    // Disabled schedules never fire; run-now still works.
    let disabled = f
        .jobs
        .update_cron(&cron.id, json!({"enabled": false}).as_object().cloned().unwrap_or_default())
        .await
        .expect("disable");
    assert_eq!(disabled.next_run_at, None);
    f.clock.advance(5 * 60_000);
    let now = f.clock.now_ms();
    assert_eq!(f.write(move |jobs, tx| fire_due(jobs, tx, now)).await.expect("tick"), None);
    let (run, job) = f.jobs.run_cron_now(&cron.id).await.expect("run now");
    assert!(run.manual);
    assert_eq!(job.kind, "noop");
    assert_eq!(f.jobs.cron_runs(&cron.id, None, None).await.expect("runs").2, 2);
}

#[test]
fn cron_expressions_need_five_or_six_fields() {
    assert!(cron::parse_expression("*/5 * * * *").is_ok());
    assert!(cron::parse_expression("30 */5 * * * *").is_ok());
    assert!(cron::parse_expression("@hourly").is_ok());
    for bad in ["* * * *", "0 0 0 1 1 * 2030", "61 * * * *", "not cron at all", "0 0 30 2 *"] {
        assert!(cron::parse_expression(bad).is_err(), "{bad} must be refused");
    }
}

#[tokio::test]
async fn the_first_occurrence_of_a_seconds_expression_is_in_the_next_second() {
    let parsed = cron::parse_expression("* * * * * *").expect("parse");
    assert_eq!(cron::next_after(&parsed, T0 + 250), Some(T0 + 1000));
}

fn finish(job: &Job, outcome: Outcome) -> Finish {
    Finish {
        id: job.id,
        attempt: job.attempt,
        queue: job.queue.clone(),
        progress: None,
        outcome,
        claimed: None,
    }
}

impl Fixture {
    async fn finish(&self, f: Finish) -> Result<(), JobsError> {
        let now = self.clock.now_ms();
        self.write(move |jobs, tx| finish_one(jobs, tx, f, now)).await
    }
}

#[tokio::test]
async fn failures_retry_with_exponential_backoff_on_the_clock_then_die_and_replay() {
    let f = fixture().await;
    let id = f.jobs.enqueue(JobSpec::new("fail", json!({})).max_attempts(3)).await.expect("e").job.id;
    let (claimed, _) = f.claim("default", 1).await;
    f.finish(finish(&claimed[0], Outcome::Failed(JobFailure::retry("boom 1"), None))).await.expect("fail 1");
    let job = f.jobs.get(id).await.expect("job");
    assert_eq!((job.state, job.attempt), (JobState::Retrying, 1));
    assert!(
        (T0 + 1000..=T0 + 1100).contains(&job.run_at),
        "first retry after base 1 s + ≤10 % jitter: {}",
        job.run_at - T0
    );
    f.clock.set(job.run_at - 1);
    assert!(f.claim("default", 1).await.0.is_empty(), "not before run_at");
    f.clock.set(job.run_at);
    let (claimed, _) = f.claim("default", 1).await;
    assert_eq!(claimed[0].attempt, 2);
    let failed_at = f.clock.now_ms();
    f.finish(finish(&claimed[0], Outcome::Failed(JobFailure::retry("boom 2"), None))).await.expect("fail 2");
    let job = f.jobs.get(id).await.expect("job");
    assert!(
        (failed_at + 2000..=failed_at + 2200).contains(&job.run_at),
        "second retry doubles: {}",
        job.run_at - failed_at
    );
    f.clock.set(job.run_at);
    let (claimed, _) = f.claim("default", 1).await;
    f.finish(finish(&claimed[0], Outcome::Failed(JobFailure::retry("boom 3"), None))).await.expect("fail 3");
    let job = f.jobs.get(id).await.expect("job");
    assert_eq!((job.state, job.attempt), (JobState::Dead, 3));
    assert_eq!(
        job.errors.iter().map(|e| e.error.as_str()).collect::<Vec<_>>(),
        vec!["boom 1", "boom 2", "boom 3"]
    );
    assert!(job.finished_at.is_some());
    // Replay: attempts start over.
    let replayed = f.jobs.retry(id).await.expect("replay");
    assert_eq!((replayed.state, replayed.attempt, replayed.finished_at), (JobState::Available, 0, None));
    assert_eq!(f.claim("default", 1).await.0[0].attempt, 1);
}

#[tokio::test]
async fn a_kind_with_its_own_backoff_base_retries_on_that_schedule_capped_by_the_config() {
    let mut registry = Registry::with_builtins(true);
    let options =
        KindOptions { backoff_base: Some(std::time::Duration::from_secs(30)), ..KindOptions::default() };
    registry.register("slow.retry", options, |_ctx| async { Err(JobFailure::retry("receiver down")) });
    let f = fixture_with(registry).await;
    let id = f.jobs.enqueue(JobSpec::new("slow.retry", json!({})).max_attempts(5)).await.expect("e").job.id;
    let mut delays = Vec::new();
    for _ in 0..2 {
        let (claimed, _) = f.claim("default", 1).await;
        let failed_at = f.clock.now_ms();
        f.finish(finish(&claimed[0], Outcome::Failed(JobFailure::retry("down"), None))).await.expect("fail");
        let job = f.jobs.get(id).await.expect("job");
        delays.push(job.run_at - failed_at);
        f.clock.set(job.run_at);
    }
    assert!((30_000..=33_000).contains(&delays[0]), "first retry after the kind's 30 s: {delays:?}");
    assert!((60_000..=66_000).contains(&delays[1]), "then doubled: {delays:?}");
    // The fixture's `[jobs] backoff_max_ms` (60 s) caps it from here on (not 120 s).
    let (claimed, _) = f.claim("default", 1).await;
    let failed_at = f.clock.now_ms();
    f.finish(finish(&claimed[0], Outcome::Failed(JobFailure::retry("down"), None))).await.expect("fail");
    let job = f.jobs.get(id).await.expect("job");
    assert!((60_000..=66_000).contains(&(job.run_at - failed_at)), "capped: {}", job.run_at - failed_at);
}

#[tokio::test]
async fn discarded_failures_die_at_once_and_snoozes_do_not_use_up_attempts() {
    let f = fixture().await;
    let a = f.jobs.enqueue(JobSpec::new("fail", json!({})).max_attempts(5)).await.expect("e").job.id;
    let (claimed, _) = f.claim("default", 1).await;
    f.finish(finish(&claimed[0], Outcome::Failed(JobFailure::discard("bad input"), None)))
        .await
        .expect("discard");
    assert_eq!(f.jobs.get(a).await.expect("job").state, JobState::Dead);

    let b = f.jobs.enqueue(JobSpec::new("noop", json!({})).max_attempts(1)).await.expect("e").job.id;
    let (claimed, _) = f.claim("default", 1).await;
    f.finish(finish(&claimed[0], Outcome::Snooze(std::time::Duration::from_secs(30)))).await.expect("snooze");
    let job = f.jobs.get(b).await.expect("job");
    assert_eq!(
        (job.state, job.attempt, job.max_attempts, job.run_at),
        (JobState::Scheduled, 1, 2, T0 + 30_000)
    );
    f.clock.advance(30_000);
    let (claimed, _) = f.claim("default", 1).await;
    assert_eq!(claimed[0].attempt, 2, "the snoozed job runs again although max_attempts was 1");
}

#[tokio::test]
async fn completion_is_fenced_by_attempt_and_commits_its_effect_atomically() {
    let f = fixture().await;
    let id = f.jobs.enqueue(JobSpec::new("noop", json!({}))).await.expect("e").job.id;
    let (claimed, _) = f.claim("default", 1).await;
    let job = claimed[0].clone();
    // A completion from another attempt (a zombie) is refused and changes nothing.
    let mut zombie = finish(&job, Outcome::Complete(None));
    zombie.attempt += 1;
    assert!(matches!(f.finish(zombie).await, Err(JobsError::Stale)));
    assert_eq!(f.jobs.get(id).await.expect("job").state, JobState::Running);
    // A failing effect: its writes are discarded and the job is untouched.
    let failing: registry::Effect = Box::new(|tx: &mut WriteTx<'_>| {
        tx.put(Table::JobEffects, b"effect-a", b"x".to_vec());
        Err(JobsError::Conflict("effect failed".into()))
    });
    assert!(f.finish(finish(&job, Outcome::Complete(Some(failing)))).await.is_err());
    assert_eq!(f.jobs.get(id).await.expect("job").state, JobState::Running);
    // A succeeding effect commits with the completion.
    let effect: registry::Effect = Box::new(|tx: &mut WriteTx<'_>| {
        tx.put(Table::JobEffects, b"effect-b", b"y".to_vec());
        Ok(())
    });
    f.finish(finish(&job, Outcome::Complete(Some(effect)))).await.expect("complete");
    assert_eq!(f.jobs.get(id).await.expect("job").state, JobState::Completed);
    let (a, b) = f
        .jobs
        .store()
        .read(|tx| {
            Ok::<_, StoreError>((
                tx.get(Table::JobEffects, b"effect-a")?,
                tx.get(Table::JobEffects, b"effect-b")?,
            ))
        })
        .await
        .expect("read");
    assert_eq!((a, b), (None, Some(b"y".to_vec())));
    // Completing again (a duplicate delivery) is refused.
    assert!(matches!(f.finish(finish(&job, Outcome::Complete(None))).await, Err(JobsError::Stale)));
}

#[tokio::test]
async fn a_failure_with_an_effect_commits_the_effect_with_the_retry_or_the_death() {
    let f = fixture().await;
    let id = f.jobs.enqueue(JobSpec::new("fail", json!({})).max_attempts(2)).await.expect("e").job.id;
    let (claimed, _) = f.claim("default", 1).await;
    let effect: registry::Effect = Box::new(|tx: &mut WriteTx<'_>| {
        tx.put(Table::JobEffects, b"failed-1", b"retrying".to_vec());
        Ok(())
    });
    f.finish(finish(&claimed[0], Outcome::Failed(JobFailure::retry("421 try later"), Some(effect))))
        .await
        .expect("fail 1");
    let job = f.jobs.get(id).await.expect("job");
    assert_eq!((job.state, job.attempt), (JobState::Retrying, 1));
    f.clock.set(job.run_at);
    let (claimed, _) = f.claim("default", 1).await;
    let effect: registry::Effect = Box::new(|tx: &mut WriteTx<'_>| {
        tx.put(Table::JobEffects, b"failed-2", b"dead".to_vec());
        Ok(())
    });
    f.finish(finish(&claimed[0], Outcome::Failed(JobFailure::discard("550 no such user"), Some(effect))))
        .await
        .expect("fail 2");
    let job = f.jobs.get(id).await.expect("job");
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(job.errors.last().map(|e| e.error.as_str()), Some("550 no such user"));
    let (a, b) = f
        .jobs
        .store()
        .read(|tx| {
            Ok::<_, StoreError>((
                tx.get(Table::JobEffects, b"failed-1")?,
                tx.get(Table::JobEffects, b"failed-2")?,
            ))
        })
        .await
        .expect("read");
    assert_eq!((a, b), (Some(b"retrying".to_vec()), Some(b"dead".to_vec())));
}

fn body(v: serde_json::Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

#[test]
fn an_enqueue_body_reports_every_problem_summarized_by_the_first() {
    let err = JobSpec::from_json(&body(json!({"priority": "high", "runAt": 5, "queue": 1})), T0)
        .expect_err("invalid");
    let JobsError::Validation(invalid) = err else { panic!("expected a validation failure, got {err:?}") };
    assert_eq!(invalid.message, "Cannot be blank.", "kind is checked first");
    assert_eq!(
        invalid.codes(),
        [
            ("kind", "validation_required"),
            ("priority", "validation_invalid_number"),
            ("queue", "validation_invalid_type"),
            ("runAt", "validation_invalid_date"),
        ]
    );
    let err = JobSpec::from_json(&body(json!({"kind": "noop", "surprise": 1})), T0).expect_err("unknown");
    assert!(
        matches!(&err, JobsError::Validation(i) if i.fields["surprise"].code == "validation_unknown_field"),
        "{err:?}"
    );
}

#[test]
fn an_enqueue_body_reads_every_option_and_treats_null_as_absent() {
    let spec = JobSpec::from_json(
        &body(json!({"kind": "noop", "payload": null, "queue": "q", "priority": 3, "delayMs": 10,
            "maxAttempts": 2, "uniqueKey": "u", "timeoutMs": 5})),
        T0,
    )
    .expect("valid");
    assert_eq!((spec.kind.as_str(), &spec.payload, spec.queue.as_deref()), ("noop", &json!(null), Some("q")));
    assert_eq!((spec.priority, spec.run_at, spec.max_attempts), (Some(3), Some(T0 + 10), Some(2)));
    assert_eq!((spec.unique_key.as_deref(), spec.timeout_ms), (Some("u"), Some(5)));
    let spec =
        JobSpec::from_json(&body(json!({"kind": "noop", "queue": null, "runAt": null})), T0).expect("valid");
    assert_eq!((spec.payload, spec.queue, spec.run_at), (json!({}), None, None));
    let err =
        JobSpec::from_json(&body(json!({"kind": "noop", "runAt": "2030-01-01 00:00:00Z", "delayMs": 1})), T0)
            .expect_err("both");
    assert!(
        matches!(&err, JobsError::Validation(i) if i.fields["runAt"].code == "validation_conflict"),
        "{err:?}"
    );
}
