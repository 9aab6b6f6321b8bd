//! What the queue holds, as typed counts (`GET /api/jobs/stats`, the history sampler), and
//! the `backbone_jobs_*` families of `/metrics`.

use std::collections::BTreeMap;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

use super::model::{parse_ready_key, visit_states, JobState};
use super::{Jobs, JobsError};
use crate::store::{ScanControl, Table};
use crate::util::metrics::Exposition;

/// Jobs per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts([u64; JobState::ALL.len()]);

impl StateCounts {
    fn slot(state: JobState) -> usize {
        usize::from(state.code().saturating_sub(1))
    }

    fn bump(&mut self, state: JobState) {
        if let Some(n) = self.0.get_mut(Self::slot(state)) {
            *n += 1;
        }
    }

    pub fn get(&self, state: JobState) -> u64 {
        self.0.get(Self::slot(state)).copied().unwrap_or(0)
    }

    /// Every state with its count, in [`JobState::ALL`] order.
    pub fn all(&self) -> impl Iterator<Item = (JobState, u64)> + '_ {
        JobState::ALL.into_iter().map(|state| (state, self.get(state)))
    }

    /// The states that hold at least one job, in [`JobState::ALL`] order.
    pub fn present(&self) -> impl Iterator<Item = (JobState, u64)> + '_ {
        self.all().filter(|(_, n)| *n > 0)
    }

    /// Jobs waiting for a run: scheduled, available or retrying.
    pub fn waiting(&self) -> u64 {
        JobState::ALL.into_iter().filter(|s| s.is_waiting()).map(|s| self.get(s)).sum()
    }
}

/// Every state, zeros included: `{"scheduled": 0, "available": 2, ...}`.
impl Serialize for StateCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_counts(self.all(), serializer)
    }
}

fn serialize_counts<S: Serializer>(
    counts: impl Iterator<Item = (JobState, u64)>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(None)?;
    for (state, n) in counts {
        map.serialize_entry(state.as_str(), &n)?;
    }
    map.end()
}

/// Only the states that hold jobs (a queue's counts).
fn serialize_present<S: Serializer>(counts: &StateCounts, serializer: S) -> Result<S::Ok, S::Error> {
    serialize_counts(counts.present(), serializer)
}

/// One queue's share.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStats {
    #[serde(serialize_with = "serialize_present")]
    pub states: StateCounts,
    /// Age of the queue's oldest job that is due but not running.
    pub oldest_waiting_ms: Option<i64>,
}

/// Counts per state and per queue, and the age of the oldest runnable job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStats {
    pub total: u64,
    pub states: StateCounts,
    pub queues: BTreeMap<String, QueueStats>,
    pub oldest_waiting_ms: Option<i64>,
}

impl JobStats {
    /// The `GET /api/jobs/stats` answer.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Jobs {
    /// Counts per state and per queue, and the age of the oldest runnable job.
    pub async fn stats(&self) -> Result<JobStats, JobsError> {
        let now = self.now_ms();
        self.inner
            .store
            .read(move |tx| {
                let mut stats = JobStats::default();
                visit_states(tx, None, None, |state, queue, _, _| {
                    stats.total += 1;
                    stats.states.bump(state);
                    stats.queues.entry(queue.to_string()).or_default().states.bump(state);
                })?;
                tx.scan_prefix(Table::JobsReady, b"", false, None, |k, _| {
                    if let Some((queue, _, run_at, _)) = parse_ready_key(k) {
                        if run_at <= now {
                            let age = now - run_at;
                            stats.oldest_waiting_ms =
                                Some(stats.oldest_waiting_ms.map_or(age, |o| o.max(age)));
                            if let Some(q) = stats.queues.get_mut(queue) {
                                q.oldest_waiting_ms = Some(q.oldest_waiting_ms.map_or(age, |o| o.max(age)));
                            }
                        }
                    }
                    ScanControl::Continue
                })?;
                Ok::<JobStats, JobsError>(stats)
            })
            .await
    }

    /// `backbone_jobs_*`: depth per queue and state, the oldest waiting age per queue, runs,
    /// failures and run durations.
    pub async fn render_metrics(&self, out: &mut Exposition) -> Result<(), JobsError> {
        let stats = self.stats().await?;
        out.family("backbone_jobs", "gauge", "Jobs by queue and state.");
        for (queue, q) in &stats.queues {
            for (state, n) in q.states.present() {
                out.sample("backbone_jobs", &[("queue", queue), ("state", state.as_str())], n as f64);
            }
        }
        out.family(
            "backbone_jobs_oldest_waiting_seconds",
            "gauge",
            "Age of the oldest job that is due but not yet running, per queue (0 when none).",
        );
        for (queue, q) in &stats.queues {
            let age = q.oldest_waiting_ms.unwrap_or(0) as f64 / 1000.0;
            out.sample("backbone_jobs_oldest_waiting_seconds", &[("queue", queue)], age);
        }
        let runs = self.run_metrics();
        for (name, help, counter) in [
            ("backbone_jobs_runs_total", "Job handler runs that finished.", &runs.runs),
            ("backbone_jobs_failures_total", "Job runs that failed (retried or dead).", &runs.failures),
        ] {
            out.single(name, "counter", help, counter.get() as f64);
        }
        out.family("backbone_jobs_run_duration_seconds", "histogram", "Time a job handler ran.");
        out.histogram("backbone_jobs_run_duration_seconds", &[], &runs.duration);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_stats_answer_lists_every_state_overall_and_the_occupied_ones_per_queue() {
        let mut stats = JobStats::default();
        for state in [JobState::Dead, JobState::Available, JobState::Available] {
            stats.total += 1;
            stats.states.bump(state);
            stats.queues.entry("mail".into()).or_default().states.bump(state);
        }
        stats.oldest_waiting_ms = Some(1500);
        if let Some(q) = stats.queues.get_mut("mail") {
            q.oldest_waiting_ms = Some(1500);
        }
        assert_eq!(stats.states.waiting(), 2);
        assert_eq!(
            stats.to_json(),
            json!({
                "total": 3,
                "states": {"scheduled": 0, "available": 2, "running": 0, "completed": 0, "retrying": 0,
                           "dead": 1, "cancelled": 0},
                "queues": {"mail": {"states": {"available": 2, "dead": 1}, "oldestWaitingMs": 1500}},
                "oldestWaitingMs": 1500,
            })
        );
        assert_eq!(JobStats::default().to_json()["oldestWaitingMs"], Value::Null);
    }
}
