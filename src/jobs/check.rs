//! `backbone check`, the job tables: every job decodes under its own id, and the indexes
//! (ready queue, by state, finished-by-time, unique keys) hold exactly the entries the
//! stored jobs imply, in both directions. Reads one snapshot; changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{finished_key, ready_key, state_key, Job};
use crate::store::{ReadTx, ScanControl, StoreError, Table};

/// What the job check found.
#[derive(Debug, Default)]
pub struct JobsCheck {
    pub jobs: u64,
    pub problems: Vec<String>,
}

fn entries(tx: &ReadTx, table: Table) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
    let mut out = BTreeMap::new();
    tx.scan_prefix(table, b"", false, None, |k, v| {
        out.insert(k.to_vec(), v.to_vec());
        ScanControl::Continue
    })?;
    Ok(out)
}

/// Compares the keys of `table` with `expected`; reports both missing and stray entries.
fn compare(
    tx: &ReadTx,
    table: Table,
    expected: &BTreeSet<Vec<u8>>,
    what: &str,
    problems: &mut Vec<String>,
) -> Result<(), StoreError> {
    let actual = entries(tx, table)?;
    let missing = expected.iter().filter(|k| !actual.contains_key(*k)).count();
    let stray = actual.keys().filter(|k| !expected.contains(*k)).count();
    if missing > 0 {
        problems.push(format!("jobs: {missing} {what} entries missing"));
    }
    if stray > 0 {
        problems.push(format!("jobs: {stray} {what} entries point at no matching job"));
    }
    Ok(())
}

/// Runs the job checks on one snapshot.
pub fn check(tx: &ReadTx) -> Result<JobsCheck, StoreError> {
    let mut report = JobsCheck::default();
    let mut ready = BTreeSet::new();
    let mut by_state = BTreeSet::new();
    let mut finished = BTreeSet::new();
    let mut unique: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let mut undecodable = 0usize;
    let mut misfiled = 0usize;
    tx.scan_prefix(Table::Jobs, b"", false, None, |k, v| {
        report.jobs += 1;
        let Some(id) = <[u8; 8]>::try_from(k).ok().map(u64::from_be_bytes) else {
            misfiled += 1;
            return ScanControl::Continue;
        };
        let job = match Job::decode(id, v) {
            Ok(job) => job,
            Err(_) => {
                undecodable += 1;
                return ScanControl::Continue;
            }
        };
        if job.id != id {
            misfiled += 1;
        }
        if job.state.is_waiting() {
            ready.insert(ready_key(&job));
        }
        by_state.insert(state_key(job.state, &job.queue, job.id));
        if let (Some(at), true) = (job.finished_at, job.state.is_finished()) {
            finished.insert(finished_key(at, job.id).to_vec());
        }
        if let (Some(key), false) = (&job.unique_key, job.state.is_finished()) {
            if let Some(other) = unique.insert(key.as_bytes().to_vec(), job.id) {
                report
                    .problems
                    .push(format!("jobs {other} and {id}: both unfinished with unique key {key:?}"));
            }
        }
        ScanControl::Continue
    })?;
    if undecodable > 0 {
        report.problems.push(format!("jobs: {undecodable} stored jobs do not decode"));
    }
    if misfiled > 0 {
        report.problems.push(format!("jobs: {misfiled} stored jobs sit under a key that is not their id"));
    }
    compare(tx, Table::JobsReady, &ready, "ready-queue", &mut report.problems)?;
    compare(tx, Table::JobsByState, &by_state, "by-state", &mut report.problems)?;
    compare(tx, Table::JobsFinished, &finished, "finished", &mut report.problems)?;
    let holders = entries(tx, Table::JobsUnique)?;
    let wrong = unique
        .iter()
        .filter(|(key, id)| holders.get(*key).map(Vec::as_slice) != Some(id.to_be_bytes().as_slice()))
        .count();
    let stray = holders.keys().filter(|k| !unique.contains_key(*k)).count();
    if wrong > 0 {
        report.problems.push(format!("jobs: {wrong} unfinished unique jobs do not hold their unique key"));
    }
    if stray > 0 {
        report.problems.push(format!("jobs: {stray} unique keys held by no unfinished job"));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::model::{job_key, save};
    use crate::store::{Store, StoreOptions, WriteTx};

    fn job(id: u64, state: super::super::JobState, unique: Option<&str>) -> Job {
        let mut job = Job::decode(
            id,
            serde_json::to_vec(&serde_json::json!({
                "kind": "test.noop", "queue": "default", "payload": {}, "priority": 5,
                "state": "available", "attempt": 0, "maxAttempts": 3, "timeoutMs": 1000,
                "runAt": 1, "created": 1, "updated": 1
            }))
            .expect("json")
            .as_slice(),
        )
        .expect("a job");
        job.state = state;
        job.unique_key = unique.map(str::to_string);
        if state.is_finished() {
            job.finished_at = Some(5);
        }
        job
    }

    #[test]
    fn consistent_tables_pass_and_each_kind_of_damage_is_reported() {
        use super::super::JobState;
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("data.redb"), &StoreOptions::default()).expect("store");
        store
            .write_blocking(|tx: &mut WriteTx<'_>| -> Result<(), crate::jobs::JobsError> {
                save(tx, None, &job(1, JobState::Available, Some("u1")))?;
                save(tx, None, &job(2, JobState::Completed, Some("u2")))?;
                save(tx, None, &job(3, JobState::Running, None))?;
                Ok(())
            })
            .expect("write");
        let report = store.read_blocking(check).expect("check");
        assert_eq!(report.jobs, 3);
        assert!(report.problems.is_empty(), "{:?}", report.problems);

        // Damage: a job whose ready and unique entries are gone, and a stray by-state entry.
        store
            .write_blocking(|tx: &mut WriteTx<'_>| -> Result<(), crate::jobs::JobsError> {
                let j = job(1, JobState::Available, Some("u1"));
                tx.delete(Table::JobsReady, &ready_key(&j));
                tx.delete(Table::JobsUnique, b"u1");
                tx.put(Table::JobsByState, &state_key(JobState::Dead, "default", 99), b"x".to_vec());
                tx.put(Table::Jobs, &job_key(7), b"not json".to_vec());
                Ok(())
            })
            .expect("write");
        let report = store.read_blocking(check).expect("check");
        let text = report.problems.join("\n");
        for expected in [
            "ready-queue entries missing",
            "by-state entries point at no",
            "do not hold their unique key",
            "do not decode",
        ] {
            assert!(text.contains(expected), "{expected:?} not in {text}");
        }
        store.shutdown();
    }
}
