//! The delivery log: one row per email in [`Table::MailLog`], keyed by its job id.
//!
//! The row is written with the job (state `queued`) in the enqueuing transaction, and
//! rewritten by the `mail.send` handler's effect in the transaction that records each
//! attempt's outcome (`sent`, `retrying`, `dead`), so the log and the queue never disagree.
//! Outcomes the handler does not see (a cancel, a timeout, an orphaned attempt after a
//! crash) are read from the job itself when the log is listed.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::MailError;
use crate::jobs::clock::format_ms;
use crate::jobs::model::{job_key, Job, JobState};
use crate::store::{ReadTx, ScanControl, Table, WriteTx};

/// Most rows per page.
pub const MAX_PER_PAGE: usize = 500;

/// A delivery state as the log shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its first attempt.
    Queued,
    /// An attempt is in progress.
    Sending,
    /// Accepted by the SMTP server.
    Sent,
    /// A temporary failure; another attempt is scheduled.
    Retrying,
    /// A permanent failure or out of attempts.
    Dead,
    /// Cancelled through the jobs API.
    Cancelled,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Queued => "queued",
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Retrying => "retrying",
            DeliveryState::Dead => "dead",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        Some(match text {
            "queued" => DeliveryState::Queued,
            "sending" => DeliveryState::Sending,
            "sent" => DeliveryState::Sent,
            "retrying" => DeliveryState::Retrying,
            "dead" => DeliveryState::Dead,
            "cancelled" => DeliveryState::Cancelled,
            _ => return None,
        })
    }

    fn is_final(self) -> bool {
        matches!(self, DeliveryState::Sent | DeliveryState::Dead | DeliveryState::Cancelled)
    }
}

/// One email's delivery record. Times are epoch ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogRow {
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_name: Option<String>,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    pub state: DeliveryState,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<String>,
    pub created: i64,
    pub updated: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<i64>,
}

impl LogRow {
    /// The API shape of the row of job `id`.
    pub fn to_json(&self, id: u64) -> Value {
        json!({
            "id": id.to_string(),
            "jobId": id.to_string(),
            "to": self.to,
            "toName": self.to_name,
            "subject": self.subject,
            "template": self.template,
            "locale": self.locale,
            "state": self.state.as_str(),
            "attempts": self.attempts,
            "lastReply": self.last_reply,
            "created": format_ms(self.created),
            "updated": format_ms(self.updated),
            "sentAt": self.sent_at.map(format_ms),
        })
    }

    /// The row as the job sees it when the handler could not record the outcome itself.
    fn reconcile(mut self, job: Option<&Job>) -> LogRow {
        let Some(job) = job else { return self };
        if self.state.is_final() {
            return self;
        }
        let state = match job.state {
            JobState::Running => DeliveryState::Sending,
            JobState::Completed => DeliveryState::Sent,
            JobState::Dead => DeliveryState::Dead,
            JobState::Cancelled => DeliveryState::Cancelled,
            JobState::Retrying => DeliveryState::Retrying,
            JobState::Scheduled | JobState::Available if job.attempt > 0 => DeliveryState::Retrying,
            JobState::Scheduled | JobState::Available => DeliveryState::Queued,
        };
        if state != self.state {
            self.state = state;
            self.attempts = self.attempts.max(job.attempt);
            if let Some(error) = job.last_error() {
                self.last_reply = Some(error.to_string());
            }
            self.updated = self.updated.max(job.updated);
        }
        self
    }
}

fn decode(bytes: &[u8]) -> Result<LogRow, MailError> {
    serde_json::from_slice(bytes)
        .map_err(|e| MailError::Internal(format!("mail log row does not decode: {e}")))
}

/// Writes a fresh row (inside the enqueuing transaction).
pub fn insert(tx: &mut WriteTx<'_>, id: u64, row: &LogRow) -> Result<(), MailError> {
    let bytes = serde_json::to_vec(row).map_err(|e| MailError::Internal(e.to_string()))?;
    tx.put(Table::MailLog, &job_key(id), bytes);
    Ok(())
}

/// Records an attempt's outcome on the row of job `id` (inside the completing transaction).
/// A missing row (deleted) is left missing.
pub fn record(
    tx: &mut WriteTx<'_>,
    id: u64,
    state: DeliveryState,
    attempt: u32,
    reply: Option<String>,
    now: i64,
) -> Result<(), MailError> {
    let Some(bytes) = tx.get(Table::MailLog, &job_key(id))? else {
        return Ok(());
    };
    let mut row = decode(&bytes)?;
    row.state = state;
    row.attempts = attempt;
    row.updated = now;
    if reply.is_some() {
        row.last_reply = reply;
    }
    if state == DeliveryState::Sent {
        row.sent_at = Some(now);
    }
    insert(tx, id, &row)
}

/// Deletes up to `max` of the oldest rows queued before `cutoff_ms` (row keys are job ids,
/// which are creation ms << 10), never the row `keep`. Runs in a completing transaction, so
/// retention costs a few deletes per email and no extra work when idle.
pub fn prune(tx: &mut WriteTx<'_>, cutoff_ms: i64, keep: u64, max: usize) -> Result<usize, MailError> {
    let cutoff_id = (cutoff_ms.max(0) as u64) << 10;
    let mut old: Vec<u64> = Vec::new();
    tx.scan_prefix(Table::MailLog, b"", None, |k, _| match <[u8; 8]>::try_from(k).map(u64::from_be_bytes) {
        Ok(id) if id < cutoff_id && old.len() < max => {
            if id != keep {
                old.push(id);
            }
            ScanControl::Continue
        }
        _ => ScanControl::Stop,
    })?;
    for id in &old {
        tx.delete(Table::MailLog, &job_key(*id));
    }
    Ok(old.len())
}

/// Filters of a log listing.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub state: Option<DeliveryState>,
    /// Exact recipient address (case-insensitive).
    pub to: Option<String>,
    pub page: usize,
    pub per_page: usize,
}

/// One page of the log, newest first, with the total count.
pub fn list(tx: &ReadTx, filter: &LogFilter) -> Result<(usize, Vec<Value>), MailError> {
    let mut rows: Vec<(u64, Vec<u8>)> = Vec::new();
    tx.scan_prefix(Table::MailLog, b"", true, None, |k, v| {
        if let Ok(bytes) = <[u8; 8]>::try_from(k) {
            rows.push((u64::from_be_bytes(bytes), v.to_vec()));
        }
        ScanControl::Continue
    })?;
    let want_to = filter.to.as_deref().map(str::to_ascii_lowercase);
    let start = (filter.page.max(1) - 1).saturating_mul(filter.per_page);
    let mut total = 0usize;
    let mut items = Vec::new();
    for (id, bytes) in rows {
        let row = decode(&bytes)?;
        if want_to.as_deref().is_some_and(|to| row.to.to_ascii_lowercase() != to) {
            continue;
        }
        let row = if row.state.is_final() {
            row
        } else {
            let job = match tx.get(Table::Jobs, &job_key(id))? {
                Some(bytes) => Some(Job::decode(id, &bytes).map_err(|e| MailError::Internal(e.to_string()))?),
                None => None,
            };
            row.reconcile(job.as_ref())
        };
        if filter.state.is_some_and(|s| s != row.state) {
            continue;
        }
        if total >= start && items.len() < filter.per_page {
            items.push(row.to_json(id));
        }
        total += 1;
    }
    Ok((total, items))
}

/// The row of job `id`, reconciled with the job.
pub fn get(tx: &ReadTx, id: u64) -> Result<Option<Value>, MailError> {
    let Some(bytes) = tx.get(Table::MailLog, &job_key(id))? else {
        return Ok(None);
    };
    let job = match tx.get(Table::Jobs, &job_key(id))? {
        Some(bytes) => Some(Job::decode(id, &bytes).map_err(|e| MailError::Internal(e.to_string()))?),
        None => None,
    };
    Ok(Some(decode(&bytes)?.reconcile(job.as_ref()).to_json(id)))
}
