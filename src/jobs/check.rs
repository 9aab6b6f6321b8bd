//! `backbone check`, the job tables: every job decodes under its own id, and the indexes
//! (ready queue, running, finished-by-time, unique keys) hold exactly the entries — keys and
//! values — the stored jobs imply, in both directions. Reads one snapshot; changes nothing.

use std::collections::BTreeMap;

use super::model::{index_key, index_value, Job};
use crate::store::{ReadTx, ScanControl, StoreError, Table};

/// What the job check found.
#[derive(Debug, Default)]
pub struct JobsCheck {
    pub jobs: u64,
    pub problems: Vec<String>,
    /// Findings that are not damage (a rebuild still pending).
    pub notes: Vec<String>,
}

fn entries(tx: &ReadTx, table: Table) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
    let mut out = BTreeMap::new();
    tx.scan_prefix(table, b"", false, None, |k, v| {
        out.insert(k.to_vec(), v.to_vec());
        ScanControl::Continue
    })?;
    Ok(out)
}

/// Compares the entries of `table` with `expected`; reports missing, stray and wrong ones.
fn compare(
    tx: &ReadTx,
    table: Table,
    expected: &BTreeMap<Vec<u8>, Vec<u8>>,
    what: &str,
    problems: &mut Vec<String>,
) -> Result<(), StoreError> {
    let actual = entries(tx, table)?;
    let missing = expected.keys().filter(|k| !actual.contains_key(*k)).count();
    let stray = actual.keys().filter(|k| !expected.contains_key(*k)).count();
    let wrong = expected.iter().filter(|(k, v)| actual.get(*k).is_some_and(|a| a != *v)).count();
    if missing > 0 {
        problems.push(format!("jobs: {missing} {what} entries missing"));
    }
    if stray > 0 {
        problems.push(format!("jobs: {stray} {what} entries point at no matching job"));
    }
    if wrong > 0 {
        problems.push(format!("jobs: {wrong} {what} entries disagree with their job's state or kind"));
    }
    Ok(())
}

/// Runs the job checks on one snapshot.
pub fn check(tx: &ReadTx) -> Result<JobsCheck, StoreError> {
    let mut report = JobsCheck::default();
    let mut expected: BTreeMap<Table, BTreeMap<Vec<u8>, Vec<u8>>> = BTreeMap::new();
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
        if let Some((table, key)) = index_key(&job) {
            expected.entry(table).or_default().insert(key, index_value(&job));
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
    let rebuild_pending = crate::store::stored_schema_version(tx)?.is_some_and(|v| v < 3)
        || tx.get(Table::Meta, crate::store::JOBS_INDEX_REBUILD_FLAG)?.is_some();
    if rebuild_pending {
        // The layout upgrade dropped the state indexes; the server rebuilds them at start.
        report.notes.push("jobs: state indexes are rebuilt at the next server start (layout upgrade)".into());
    } else {
        for (table, what) in [
            (Table::JobsReady, "ready-queue"),
            (Table::JobsByState, "running"),
            (Table::JobsFinished, "finished"),
        ] {
            let none = BTreeMap::new();
            compare(tx, table, expected.get(&table).unwrap_or(&none), what, &mut report.problems)?;
        }
    }
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
    use crate::jobs::model::{finished_key, job_key, ready_key, save, state_key};
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
                tx.put(Table::JobsByState, &state_key(JobState::Running, "default", 99), b"x".to_vec());
                // The completed job's entry claims it is dead.
                let done = job(2, JobState::Completed, Some("u2"));
                tx.put(Table::JobsFinished, &finished_key(5, done.id), b"\x06default\x00test.noop".to_vec());
                tx.put(Table::Jobs, &job_key(7), b"not json".to_vec());
                Ok(())
            })
            .expect("write");
        let report = store.read_blocking(check).expect("check");
        let text = report.problems.join("\n");
        for expected in [
            "ready-queue entries missing",
            "running entries point at no",
            "finished entries disagree with their job",
            "do not hold their unique key",
            "do not decode",
        ] {
            assert!(text.contains(expected), "{expected:?} not in {text}");
        }
        store.shutdown();
    }

    #[test]
    fn a_schema_2_file_has_its_job_indexes_rebuilt_in_the_new_layout() {
        use super::super::{JobState, Jobs, ListFilter, Registry};
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("data.redb");
        let jobs = [
            job(1, JobState::Available, Some("u1")),
            job(2, JobState::Completed, None),
            job(3, JobState::Running, None),
            job(4, JobState::Dead, None),
        ];
        {
            // Write the jobs as a schema-2 build did: a by-state entry for every job, empty
            // ready values, one-byte finished values.
            let store = Store::open(&path, &StoreOptions::default()).expect("store");
            let old = jobs.clone();
            store
                .write_blocking(move |tx: &mut WriteTx<'_>| -> Result<(), crate::jobs::JobsError> {
                    for j in &old {
                        tx.put(Table::Jobs, &job_key(j.id), j.encode()?);
                        tx.put(
                            Table::JobsByState,
                            &state_key(j.state, &j.queue, j.id),
                            j.kind.as_bytes().to_vec(),
                        );
                        if j.state.is_waiting() {
                            tx.put(Table::JobsReady, &ready_key(j), Vec::new());
                        }
                        if let Some(at) = j.finished_at {
                            tx.put(Table::JobsFinished, &finished_key(at, j.id), vec![j.state.code()]);
                        }
                    }
                    tx.put(Table::JobsUnique, b"u1", 1u64.to_be_bytes().to_vec());
                    tx.put(Table::Meta, b"schema_version", 2u32.to_le_bytes().to_vec());
                    Ok(())
                })
                .expect("write");
            let report = store.read_blocking(check).expect("check");
            assert!(report.notes.iter().any(|n| n.contains("rebuilt")), "{:?}", report.notes);
            assert!(report.problems.is_empty(), "a pending rebuild is not damage: {:?}", report.problems);
            store.shutdown();
        }
        let store = Store::open(&path, &StoreOptions::default()).expect("reopen");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let clock = std::sync::Arc::new(crate::jobs::clock::ManualClock::new(10));
        let queue = runtime
            .block_on(Jobs::open(store.clone(), Default::default(), Registry::with_builtins(true), clock))
            .expect("open jobs");
        let report = store.read_blocking(check).expect("check");
        assert_eq!(report.jobs, 4);
        assert!(report.problems.is_empty() && report.notes.is_empty(), "{report:?}");
        for (state, want) in
            [("available", vec!["1"]), ("running", vec!["3"]), ("completed", vec!["2"]), ("dead", vec!["4"])]
        {
            let filter = ListFilter { state: Some(state.into()), ..Default::default() };
            let page = runtime.block_on(queue.list(filter)).expect("list");
            let ids: Vec<String> = page.items.iter().map(|j| j.id.to_string()).collect();
            assert_eq!(ids, want, "{state}");
        }
        let stats = runtime.block_on(queue.stats()).expect("stats");
        assert_eq!(stats.total, 4);
        assert_eq!(stats.queues.get("default").map(|q| q.states.get(JobState::Dead)), Some(1));
        store.shutdown();
    }
}
