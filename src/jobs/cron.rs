//! Cron schedules stored in redb: each enqueues a job kind with a payload at the times of a
//! 5- or 6-field cron expression (UTC; 6 fields = with seconds), with a persisted run history.
//!
//! A schedule stores its `nextRunAt`. The scheduler task sleeps until the earliest one; when
//! it fires, the job enqueue, the run record and the advanced `nextRunAt` (the first
//! occurrence after *now*) are one transaction, so a run fires once even across crashes,
//! and after downtime the missed occurrences are caught up by exactly one run.

use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::clock::format_ms;
use super::{paging, whole_number, JobSpec, Jobs, JobsError, MAX_PRIORITY};
use crate::store::{ScanControl, Table, WriteTx};
use crate::util::invalid::{parse_object, present, Collector, Invalid, Summary, Typed};

/// Most runs kept per schedule (older ones are dropped when a run is recorded).
const KEPT_RUNS: usize = 200;

/// A stored schedule. Times are epoch ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cron {
    pub id: String,
    pub name: String,
    pub expression: String,
    pub kind: String,
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    pub enabled: bool,
    pub created: i64,
    pub updated: i64,
    /// The next occurrence to fire; `None` while disabled.
    #[serde(default)]
    pub next_run_at: Option<i64>,
    /// The occurrence the last scheduled run was for.
    #[serde(default)]
    pub last_run_at: Option<i64>,
}

/// One firing of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CronRun {
    pub cron_id: String,
    /// The occurrence this run is for (the fire time for manual runs).
    pub scheduled_for: i64,
    pub fired_at: i64,
    #[serde(default)]
    pub job_id: Option<u64>,
    /// Started with run-now rather than by the schedule.
    pub manual: bool,
    /// Fired late because the server was down (or busy) at the occurrence.
    pub caught_up: bool,
    #[serde(default)]
    pub error: Option<String>,
}

impl Cron {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "expression": self.expression,
            "kind": self.kind,
            "payload": self.payload,
            "queue": self.queue,
            "priority": self.priority,
            "maxAttempts": self.max_attempts,
            "enabled": self.enabled,
            "created": format_ms(self.created),
            "updated": format_ms(self.updated),
            "nextRunAt": self.next_run_at.map(format_ms),
            "lastRunAt": self.last_run_at.map(format_ms),
        })
    }

    fn spec(&self) -> JobSpec {
        JobSpec {
            kind: self.kind.clone(),
            payload: self.payload.clone(),
            queue: self.queue.clone(),
            priority: self.priority,
            run_at: None,
            max_attempts: self.max_attempts,
            unique_key: None,
            timeout_ms: None,
        }
    }
}

impl CronRun {
    pub fn to_json(&self) -> Value {
        json!({
            "cronId": self.cron_id,
            "scheduledFor": format_ms(self.scheduled_for),
            "firedAt": format_ms(self.fired_at),
            "jobId": self.job_id.map(|id| id.to_string()),
            "manual": self.manual,
            "caughtUp": self.caught_up,
            "error": self.error,
        })
    }
}

/// Parses a 5-field (minute precision) or 6-field (with seconds) expression, or an
/// `@hourly`-style nickname. Always UTC.
pub fn parse_expression(expression: &str) -> Result<croner::Cron, JobsError> {
    let trimmed = expression.trim();
    let invalid = |message: String| Invalid::of("expression", "validation_invalid_cron", message);
    let fields = trimmed.split_whitespace().count();
    if !trimmed.starts_with('@') && !(5..=6).contains(&fields) {
        return Err(invalid(format!(
            "Expected 5 fields (minute hour day month weekday) or 6 (with seconds first), got {fields}."
        ))
        .into());
    }
    let parser = CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
    let cron = parser.parse(trimmed).map_err(|e| invalid(format!("Invalid cron expression: {e}.")))?;
    // An expression that never matches (e.g. 30 February) is refused, not stored.
    if next_after(&cron, 0).is_none() {
        return Err(invalid("The expression never matches.".into()).into());
    }
    Ok(cron)
}

/// The first occurrence strictly after `after_ms`.
pub fn next_after(cron: &croner::Cron, after_ms: i64) -> Option<i64> {
    let start = chrono::DateTime::from_timestamp_millis(after_ms)?;
    cron.find_next_occurrence(&start, false).ok().map(|t| t.timestamp_millis())
}

fn next_for(expression: &str, after_ms: i64) -> Option<i64> {
    parse_expression(expression).ok().and_then(|c| next_after(&c, after_ms))
}

fn cron_not_found() -> JobsError {
    JobsError::NotFound("The requested cron schedule wasn't found.".into())
}

fn encode(cron: &Cron) -> Result<Vec<u8>, JobsError> {
    serde_json::to_vec(cron).map_err(|e| JobsError::Internal(e.to_string()))
}

fn decode(bytes: &[u8]) -> Result<Cron, JobsError> {
    serde_json::from_slice(bytes).map_err(|e| JobsError::Internal(format!("cannot decode cron: {e}")))
}

fn run_key(cron_id: &str, fired_at: i64, job_id: u64) -> Vec<u8> {
    let mut key = cron_id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&(fired_at.max(0) as u64).to_be_bytes());
    key.extend_from_slice(&job_id.to_be_bytes());
    key
}

fn runs_prefix(cron_id: &str) -> Vec<u8> {
    let mut key = cron_id.as_bytes().to_vec();
    key.push(0);
    key
}

/// Stores a run and drops the oldest beyond [`KEPT_RUNS`].
fn record_run(tx: &mut WriteTx<'_>, run: &CronRun) -> Result<(), JobsError> {
    let bytes = serde_json::to_vec(run).map_err(|e| JobsError::Internal(e.to_string()))?;
    let prefix = runs_prefix(&run.cron_id);
    let mut keys: Vec<Vec<u8>> = Vec::new();
    tx.scan_prefix(Table::CronRuns, &prefix, None, |k, _| {
        keys.push(k.to_vec());
        ScanControl::Continue
    })?;
    if keys.len() + 1 > KEPT_RUNS {
        for key in keys.iter().take(keys.len() + 1 - KEPT_RUNS) {
            tx.delete(Table::CronRuns, key);
        }
    }
    tx.put(Table::CronRuns, &run_key(&run.cron_id, run.fired_at, run.job_id.unwrap_or(0)), bytes);
    Ok(())
}

/// Enqueues the job of `cron` in `tx` and records the run.
fn fire(
    jobs: &Jobs,
    tx: &mut WriteTx<'_>,
    cron: &Cron,
    scheduled_for: i64,
    now: i64,
    manual: bool,
) -> Result<CronRun, JobsError> {
    let mut run = CronRun {
        cron_id: cron.id.clone(),
        scheduled_for,
        fired_at: now,
        job_id: None,
        manual,
        caught_up: !manual && now - scheduled_for > 1000,
        error: None,
    };
    match jobs.enqueue_in(tx, cron.spec()) {
        Ok(enqueued) => run.job_id = Some(enqueued.job.id),
        Err(JobsError::Store(e)) => return Err(JobsError::Store(e)),
        Err(err) => run.error = Some(err.to_string()),
    }
    record_run(tx, &run)?;
    Ok(run)
}

/// Fires every enabled schedule whose `nextRunAt` has come: once, however many occurrences
/// were missed. Returns the earliest `nextRunAt` left (when to look again).
pub fn fire_due(jobs: &Jobs, tx: &mut WriteTx<'_>, now: i64) -> Result<Option<i64>, JobsError> {
    let mut next: Option<i64> = None;
    for (key, bytes) in tx.collect_prefix(Table::Crons, b"")? {
        let mut cron = match decode(&bytes) {
            Ok(c) => c,
            Err(err) => {
                tracing::error!(error = %err, "skipping an unreadable cron schedule");
                continue;
            }
        };
        let Some(due) = cron.next_run_at.filter(|_| cron.enabled) else { continue };
        if due <= now {
            let run = fire(jobs, tx, &cron, due, now, false)?;
            if let Some(error) = &run.error {
                tracing::warn!(cron = %cron.id, error = %error, "cron run could not enqueue its job");
            }
            cron.last_run_at = Some(due);
            cron.next_run_at = next_for(&cron.expression, now);
            tx.put(Table::Crons, &key, encode(&cron)?);
        }
        if let Some(n) = cron.next_run_at {
            next = Some(next.map_or(n, |m: i64| m.min(n)));
        }
    }
    Ok(next)
}

pub(super) async fn schedule_loop(jobs: Jobs) {
    let rt = &jobs.inner.runtime;
    loop {
        let now = jobs.now_ms();
        let jobs2 = jobs.clone();
        let next = match jobs.inner.store.write(move |tx: &mut WriteTx<'_>| fire_due(&jobs2, tx, now)).await {
            Ok(next) => next,
            Err(err) => {
                tracing::warn!(error = %err, "firing cron schedules failed; retrying in 1 s");
                Some(now + 1000)
            }
        };
        let sleep = async {
            match next {
                Some(due) => {
                    tokio::time::sleep(Duration::from_millis((due - jobs.now_ms()).max(0) as u64)).await
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = sleep => {}
            () = rt.cron_notify.notified() => {}
            () = rt.stop.cancelled() => break,
        }
    }
}

/// The body of `POST /api/crons` and `PATCH /api/crons/{id}`. Absent members (and `null`
/// name, expression, kind and enabled) leave a PATCH's schedule as it is; a present
/// `payload` is taken as sent, and a `null` queue, priority or maxAttempts clears it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CronInput {
    #[serde(default)]
    name: Option<Typed<String>>,
    #[serde(default)]
    expression: Option<Typed<String>>,
    #[serde(default)]
    kind: Option<Typed<String>>,
    #[serde(default, deserialize_with = "present")]
    payload: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    queue: Option<Option<Typed<String>>>,
    #[serde(default, deserialize_with = "present")]
    priority: Option<Option<Typed<u64>>>,
    #[serde(default, deserialize_with = "present")]
    max_attempts: Option<Option<Typed<u64>>>,
    #[serde(default)]
    enabled: Option<Typed<bool>>,
}

impl CronInput {
    /// Parses a cron body (unknown members are refused).
    fn parse(body: Map<String, Value>) -> Result<CronInput, JobsError> {
        Ok(parse_object(Value::Object(body), Summary::FirstProblem)?)
    }
}

/// Validates `input` against the stored schedule (`current`, for a PATCH) and returns the
/// schedule to store. Every problem with the body is reported at once, summarized by the
/// first; the job options are then checked exactly as an enqueue would.
fn apply_input(jobs: &Jobs, input: CronInput, current: Option<&Cron>, now: i64) -> Result<Cron, JobsError> {
    let mut cron = match current {
        Some(c) => c.clone(),
        None => Cron {
            id: crate::util::id::random_string(15),
            name: String::new(),
            expression: String::new(),
            kind: String::new(),
            payload: json!({}),
            queue: None,
            priority: None,
            max_attempts: None,
            enabled: true,
            created: now,
            updated: now,
            next_run_at: None,
            last_run_at: None,
        },
    };
    let was_enabled = current.map(|c| c.enabled).unwrap_or(false);
    let old_expression = cron.expression.clone();
    let mut c = Collector::new();
    let string = "Must be a string.";
    if let Some(name) = c.typed("name", input.name, "validation_invalid_type", string) {
        cron.name = name;
    }
    if let Some(expression) = c.typed("expression", input.expression, "validation_invalid_type", string) {
        cron.expression = expression.trim().to_string();
    }
    if let Some(kind) = c.typed("kind", input.kind, "validation_invalid_type", string) {
        cron.kind = kind;
    }
    if let Some(payload) = input.payload {
        cron.payload = payload;
    }
    if let Some(queue) = input.queue {
        cron.queue = c.typed("queue", queue, "validation_invalid_type", string);
    }
    if let Some(priority) = input.priority {
        cron.priority = whole_number(&mut c, "priority", priority, u64::from(MAX_PRIORITY)).map(|p| p as u8);
    }
    if let Some(max_attempts) = input.max_attempts {
        cron.max_attempts = whole_number(&mut c, "maxAttempts", max_attempts, 1000).map(|n| n as u32);
    }
    if let Some(enabled) =
        c.typed("enabled", input.enabled, "validation_invalid_type", "Must be true or false.")
    {
        cron.enabled = enabled;
    }
    if cron.name.trim().is_empty() || cron.name.len() > 200 {
        c.add("name", "validation_required", "Cannot be blank (at most 200 characters).");
    }
    if cron.expression.is_empty() {
        c.add("expression", "validation_required", "Cannot be blank.");
    }
    let parsed = match parse_expression(&cron.expression) {
        Ok(parsed) => Some(parsed),
        Err(JobsError::Validation(invalid)) => {
            c.add_invalid(invalid);
            None
        }
        Err(other) => return Err(other),
    };
    if cron.kind.is_empty() {
        c.add("kind", "validation_required", "Cannot be blank.");
    }
    c.finish(Summary::FirstProblem)?;
    // Validates kind, queue, priority and attempts exactly as an enqueue would.
    jobs.build(cron.spec())?;
    cron.updated = now;
    if !cron.enabled {
        cron.next_run_at = None;
    } else if !was_enabled || old_expression != cron.expression || cron.next_run_at.is_none() {
        cron.next_run_at = parsed.and_then(|parsed| next_after(&parsed, now));
    }
    Ok(cron)
}

impl Jobs {
    fn wake_cron_after_commit(&self, tx: &mut WriteTx<'_>) {
        if self.inner.runtime.is_started() {
            let jobs = self.clone();
            tx.after_commit(move || jobs.inner.runtime.cron_notify.notify_one());
        }
    }

    /// Creates a schedule.
    pub async fn create_cron(&self, body: Map<String, Value>) -> Result<Cron, JobsError> {
        let cron = apply_input(self, CronInput::parse(body)?, None, self.now_ms())?;
        let jobs = self.clone();
        self.inner
            .store
            .write(move |tx: &mut WriteTx<'_>| {
                tx.put(Table::Crons, cron.id.as_bytes(), encode(&cron)?);
                jobs.wake_cron_after_commit(tx);
                Ok(cron)
            })
            .await
    }

    /// Every schedule, oldest first.
    pub async fn list_crons(&self) -> Result<Vec<Cron>, JobsError> {
        self.inner
            .store
            .read(|tx| {
                let mut out = Vec::new();
                let mut failed = None;
                tx.scan_prefix(Table::Crons, b"", false, None, |_, v| match decode(v) {
                    Ok(c) => {
                        out.push(c);
                        ScanControl::Continue
                    }
                    Err(e) => {
                        failed = Some(e);
                        ScanControl::Stop
                    }
                })?;
                if let Some(e) = failed {
                    return Err(e);
                }
                out.sort_by(|a: &Cron, b: &Cron| a.created.cmp(&b.created).then_with(|| a.id.cmp(&b.id)));
                Ok(out)
            })
            .await
    }

    pub async fn get_cron(&self, id: &str) -> Result<Cron, JobsError> {
        let id = id.to_string();
        self.inner
            .store
            .read(move |tx| match tx.get(Table::Crons, id.as_bytes())? {
                Some(bytes) => decode(&bytes),
                None => Err(cron_not_found()),
            })
            .await
    }

    /// Changes a schedule; enabling it (or changing its expression) schedules it from now.
    pub async fn update_cron(&self, id: &str, body: Map<String, Value>) -> Result<Cron, JobsError> {
        let id = id.to_string();
        let jobs = self.clone();
        let now = self.now_ms();
        // A body that does not parse is reported after the schedule is found (404 first).
        let input = CronInput::parse(body);
        self.inner
            .store
            .write(move |tx: &mut WriteTx<'_>| {
                let current = decode(&tx.get(Table::Crons, id.as_bytes())?.ok_or_else(cron_not_found)?)?;
                let cron = apply_input(&jobs, input?, Some(&current), now)?;
                tx.put(Table::Crons, cron.id.as_bytes(), encode(&cron)?);
                jobs.wake_cron_after_commit(tx);
                Ok(cron)
            })
            .await
    }

    /// Deletes a schedule and its run history (jobs it enqueued stay).
    pub async fn delete_cron(&self, id: &str) -> Result<(), JobsError> {
        let id = id.to_string();
        let jobs = self.clone();
        self.inner
            .store
            .write(move |tx: &mut WriteTx<'_>| {
                if tx.get(Table::Crons, id.as_bytes())?.is_none() {
                    return Err(cron_not_found());
                }
                tx.delete(Table::Crons, id.as_bytes());
                for (key, _) in tx.collect_prefix(Table::CronRuns, &runs_prefix(&id))? {
                    tx.delete(Table::CronRuns, &key);
                }
                jobs.wake_cron_after_commit(tx);
                Ok(())
            })
            .await
    }

    /// Enqueues the schedule's job now (the schedule itself is unchanged).
    pub async fn run_cron_now(&self, id: &str) -> Result<(CronRun, super::Job), JobsError> {
        let id = id.to_string();
        let jobs = self.clone();
        let now = self.now_ms();
        self.inner
            .store
            .write(move |tx: &mut WriteTx<'_>| {
                let cron = decode(&tx.get(Table::Crons, id.as_bytes())?.ok_or_else(cron_not_found)?)?;
                let enqueued = jobs.enqueue_in(tx, cron.spec())?;
                let run = CronRun {
                    cron_id: cron.id.clone(),
                    scheduled_for: now,
                    fired_at: now,
                    job_id: Some(enqueued.job.id),
                    manual: true,
                    caught_up: false,
                    error: None,
                };
                record_run(tx, &run)?;
                Ok((run, enqueued.job))
            })
            .await
    }

    /// A schedule's runs, newest first.
    pub async fn cron_runs(
        &self,
        id: &str,
        page: Option<&str>,
        per_page: Option<&str>,
    ) -> Result<(usize, usize, usize, Vec<CronRun>), JobsError> {
        let (page, per_page) = paging(page, per_page)?;
        let id = id.to_string();
        self.inner
            .store
            .read(move |tx| {
                if tx.get(Table::Crons, id.as_bytes())?.is_none() {
                    return Err(cron_not_found());
                }
                let mut all = Vec::new();
                tx.scan_prefix(Table::CronRuns, &runs_prefix(&id), true, None, |_, v| {
                    if let Ok(run) = serde_json::from_slice::<CronRun>(v) {
                        all.push(run);
                    }
                    ScanControl::Continue
                })?;
                let total = all.len();
                let items =
                    all.into_iter().skip((page - 1).saturating_mul(per_page)).take(per_page).collect();
                Ok((page, per_page, total, items))
            })
            .await
    }
}
