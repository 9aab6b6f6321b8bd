//! Store tests: durability of acknowledged writes, batch isolation, overlay reads.

use std::sync::Arc;

use super::*;

#[derive(Debug)]
enum TestError {
    Store(StoreError),
    Rejected,
}

impl From<StoreError> for TestError {
    fn from(err: StoreError) -> Self {
        TestError::Store(err)
    }
}

fn open(dir: &Path) -> Store {
    Store::open(&dir.join("data.redb"), &StoreOptions::default()).expect("open store")
}

#[test]
fn acknowledged_writes_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .write_blocking(|tx: &mut WriteTx<'_>| -> Result<(), TestError> {
            tx.put(Table::Records, b"k1", b"v1".to_vec());
            Ok(())
        })
        .expect("write");
    store.shutdown();
    drop(store);
    let store = open(dir.path());
    let value = store.read_blocking(|tx| tx.get(Table::Records, b"k1")).expect("read");
    assert_eq!(value.as_deref(), Some(b"v1".as_slice()));
}

#[test]
fn a_second_process_style_open_is_refused_while_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _store = open(dir.path());
    let second = Store::open(&dir.path().join("data.redb"), &StoreOptions::default());
    assert!(matches!(second, Err(StoreError::Locked)), "got {:?}", second.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_write_in_a_batch_does_not_fail_its_neighbours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut handles = Vec::new();
    for i in 0..200u32 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .write(move |tx: &mut WriteTx<'_>| -> Result<u32, TestError> {
                    // Every write stages a change; odd ones then fail.
                    tx.put(Table::Records, format!("key{i:04}").as_bytes(), vec![1]);
                    if i % 2 == 1 {
                        return Err(TestError::Rejected);
                    }
                    Ok(i)
                })
                .await
        }));
    }
    let mut accepted = 0;
    for (i, h) in handles.into_iter().enumerate() {
        match h.await.expect("join") {
            Ok(v) => {
                assert_eq!(v as usize, i);
                accepted += 1;
            }
            Err(TestError::Rejected) => assert_eq!(i % 2, 1),
            Err(TestError::Store(e)) => panic!("store error: {e}"),
        }
    }
    assert_eq!(accepted, 100);
    let keys = store
        .read(|tx| {
            let mut keys = Vec::new();
            tx.scan_prefix(Table::Records, b"key", false, None, |k, _| {
                keys.push(String::from_utf8_lossy(k).to_string());
                ScanControl::Continue
            })?;
            Ok::<_, StoreError>(keys)
        })
        .await
        .expect("scan");
    assert_eq!(keys.len(), 100, "only accepted writes are stored");
    assert!(keys.iter().all(|k| k[3..].parse::<u32>().expect("number") % 2 == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_are_group_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut handles = Vec::new();
    for i in 0..500u32 {
        let store = store.clone();
        let counter = counter.clone();
        handles.push(tokio::spawn(async move {
            store
                .write(move |tx: &mut WriteTx<'_>| -> Result<(), TestError> {
                    // Read-modify-write on one key: serial application inside batches.
                    let current = tx
                        .get(Table::Meta, b"counter")?
                        .map(|v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8])))
                        .unwrap_or(0);
                    tx.put(Table::Meta, b"counter", (current + 1).to_le_bytes().to_vec());
                    tx.put(Table::Records, format!("r{i}").as_bytes(), vec![0]);
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    Ok(())
                })
                .await
        }));
    }
    for h in handles {
        h.await.expect("join").expect("write");
    }
    let value = store
        .read(|tx| tx.get(Table::Meta, b"counter"))
        .await
        .expect("read")
        .map(|v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8])));
    assert_eq!(value, Some(500), "every increment applied exactly once");
}

#[test]
fn write_sees_its_own_staged_changes_and_collect_merges_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .write_blocking(|tx: &mut WriteTx<'_>| -> Result<(), TestError> {
            tx.put(Table::Records, b"p\0a", b"1".to_vec());
            tx.put(Table::Records, b"p\0b", b"2".to_vec());
            tx.put(Table::Records, b"q\0z", b"9".to_vec());
            Ok(())
        })
        .expect("seed");
    store
        .write_blocking(|tx: &mut WriteTx<'_>| -> Result<(), TestError> {
            tx.delete(Table::Records, b"p\0a");
            tx.put(Table::Records, b"p\0c", b"3".to_vec());
            assert_eq!(tx.get(Table::Records, b"p\0a")?, None);
            assert_eq!(tx.get(Table::Records, b"p\0c")?.as_deref(), Some(b"3".as_slice()));
            let all = tx.collect_prefix(Table::Records, b"p\0")?;
            let keys: Vec<&[u8]> = all.iter().map(|(k, _)| k.as_slice()).collect();
            assert_eq!(keys, vec![b"p\0b".as_slice(), b"p\0c".as_slice()]);
            Ok(())
        })
        .expect("overlay");
}

#[test]
fn reverse_scan_with_cursor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .write_blocking(|tx: &mut WriteTx<'_>| -> Result<(), TestError> {
            for k in ["c\x001", "c\x002", "c\x003", "d\x00x"] {
                tx.put(Table::Records, k.as_bytes(), vec![]);
            }
            Ok(())
        })
        .expect("seed");
    let keys = store
        .read_blocking(|tx| {
            let mut keys = Vec::new();
            tx.scan_prefix(Table::Records, b"c\0", true, Some(b"c\x003"), |k, _| {
                keys.push(k.to_vec());
                ScanControl::Continue
            })?;
            Ok::<_, StoreError>(keys)
        })
        .expect("scan");
    assert_eq!(keys, vec![b"c\x002".to_vec(), b"c\x001".to_vec()]);
}

#[test]
fn writes_after_shutdown_are_refused_as_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.shutdown();
    let result = store.write_blocking(|tx: &mut WriteTx<'_>| -> Result<(), TestError> {
        tx.put(Table::Meta, b"x", vec![]);
        Ok(())
    });
    assert!(matches!(result, Err(TestError::Store(StoreError::Unavailable(_)))), "{result:?}");
}

fn put(store: &Store, key: &'static [u8]) -> Result<(), TestError> {
    store.write_blocking(move |tx: &mut WriteTx<'_>| -> Result<(), TestError> {
        tx.put(Table::Records, key, key.to_vec());
        Ok(())
    })
}

fn wait_healthy(store: &Store) {
    for _ in 0..300 {
        if store.is_healthy() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("store did not recover");
}

#[test]
fn failed_fsync_answers_unavailable_then_the_file_is_reopened_and_acked_data_kept() {
    use super::fault::{Fault, FaultInjector};
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(FaultInjector::default());
    let options = StoreOptions { faults: Some(faults.clone()), ..StoreOptions::default() };
    let store = Store::open(&dir.path().join("data.redb"), &options).expect("open");
    put(&store, b"before").expect("acknowledged write");

    faults.set(Fault::SyncFails);
    let failed = put(&store, b"during");
    assert!(matches!(failed, Err(TestError::Store(StoreError::Unavailable(_)))), "{failed:?}");
    faults.set(Fault::None);
    wait_healthy(&store);

    put(&store, b"after").expect("writes resume after the reopen");
    let read = |k: &'static [u8]| store.read_blocking(|tx| tx.get(Table::Records, k)).expect("read");
    assert!(read(b"before").is_some(), "acknowledged write survived the failed commit");
    assert!(read(b"after").is_some());
    store.shutdown();
    drop(store);
    let reopened = open(dir.path());
    let read = |k: &'static [u8]| reopened.read_blocking(|tx| tx.get(Table::Records, k)).expect("read");
    assert!(read(b"before").is_some() && read(b"after").is_some(), "durable across a clean reopen");
}

#[test]
fn disk_full_answers_disk_full_and_writes_resume_when_space_returns() {
    use super::fault::{Fault, FaultInjector};
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = Arc::new(FaultInjector::default());
    let options = StoreOptions { faults: Some(faults.clone()), ..StoreOptions::default() };
    let store = Store::open(&dir.path().join("data.redb"), &options).expect("open");
    put(&store, b"kept").expect("write");
    faults.set(Fault::DiskFull);
    // Big enough to need new pages, so the write path hits the full disk.
    let big = store.write_blocking(|tx: &mut WriteTx<'_>| -> Result<(), TestError> {
        for i in 0..2000u32 {
            tx.put(Table::Records, format!("big{i}").as_bytes(), vec![7u8; 4096]);
        }
        Ok(())
    });
    assert!(matches!(big, Err(TestError::Store(StoreError::DiskFull))), "{big:?}");
    faults.set(Fault::None);
    wait_healthy(&store);
    put(&store, b"resumed").expect("writes resume");
    let read = |k: &'static [u8]| store.read_blocking(|tx| tx.get(Table::Records, k)).expect("read");
    assert!(read(b"kept").is_some() && read(b"resumed").is_some());
    assert!(read(b"big0").is_none(), "nothing of the failed write remains");
}

/// Commits `count` transactions (key i → value i, one per commit) the way the writer does
/// (two-phase commit, durable), through the simulated disk, until one fails. Returns how
/// many commits were acknowledged and the disk.
fn commit_until_power_cut(fail_after: Option<u64>, count: u32) -> (u32, Arc<fault::PowerLossDisk>) {
    let disk = fault::PowerLossDisk::new(Vec::new(), fail_after);
    let options = StoreOptions { disk: Some(disk.clone()), cache_bytes: 1 << 20, ..StoreOptions::default() };
    let Ok(db) = open_database(Path::new("unused"), &options) else {
        return (0, disk);
    };
    let mut acked = 0;
    for i in 0..count {
        let outcome = (|| -> Result<(), StoreError> {
            let mut txn = db.begin_write().map_err(StoreError::from_redb)?;
            txn.set_two_phase_commit(true);
            let mut wtx = WriteTx::new(&txn);
            wtx.put(
                Table::Meta,
                format!("key{i:04}").as_bytes(),
                format!("value{i}").repeat(50).into_bytes(),
            );
            wtx.apply(&super::tx::Generations::default())?;
            txn.commit().map_err(StoreError::from_redb)
        })();
        if outcome.is_err() {
            break;
        }
        acked = i + 1;
    }
    (acked, disk)
}

#[test]
fn power_loss_at_every_point_keeps_exactly_the_acknowledged_prefix() {
    const COMMITS: u32 = 12;
    let (all, full) = commit_until_power_cut(None, COMMITS);
    assert_eq!(all, COMMITS);
    let total_ops = full.ops();
    // Operations that create the file on first start: a cut there leaves a file redb refuses
    // ("not a redb database"). On a real disk the file is created under a temporary name
    // and renamed into place (`create_atomically`, tested below), so such a file is never
    // found under the real name.
    let (_, created) = commit_until_power_cut(None, 0);
    let init_ops = created.ops();
    assert!(total_ops > init_ops + 20, "the run made only {total_ops} I/O operations");
    let mut checked = 0;
    for cut in init_ops..=total_ops {
        let (acked, disk) = commit_until_power_cut(Some(cut), COMMITS);
        // The power is cut: either only what was synced survives, or (a disk that flushed
        // its cache anyway) every write made before the cut does. Both must reopen (redb
        // recovers) holding every acknowledged commit and nothing torn.
        for (model, image) in [("synced only", disk.durable()), ("all writes", disk.volatile())] {
            let after = fault::PowerLossDisk::new(image, None);
            let options = StoreOptions { disk: Some(after), cache_bytes: 1 << 20, ..StoreOptions::default() };
            let db = open_database(Path::new("unused"), &options)
                .unwrap_or_else(|e| panic!("cut at op {cut} ({model}): the database does not reopen: {e}"));
            let tx = ReadTx::begin(&db).expect("read");
            let mut present = 0;
            for i in 0..COMMITS {
                if let Some(v) = tx.get(Table::Meta, format!("key{i:04}").as_bytes()).expect("get") {
                    assert_eq!(
                        v,
                        format!("value{i}").repeat(50).into_bytes(),
                        "cut at op {cut} ({model}): key {i} corrupted"
                    );
                    assert_eq!(present, i, "cut at op {cut} ({model}): key {i} present after a missing one");
                    present += 1;
                }
            }
            // Every acknowledged commit survived; at most the one in flight at the cut may too.
            assert!(
                present == acked || present == acked + 1,
                "cut at op {cut} ({model}): {acked} commits acknowledged, {present} present"
            );
        }
        checked += 1;
    }
    eprintln!(
        "power-loss sweep: {checked} cut points over {total_ops} I/O operations, {COMMITS} commits each"
    );
}

#[test]
fn write_generations_move_only_for_applied_writes_to_their_segment() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&dir.path().join("data.redb"), &StoreOptions::default()).expect("open");
    let (a, b) = (b"collection_aaaa".as_slice(), b"collection_bbbb".as_slice());
    let (a0, b0) = (store.generation(Table::Records, a), store.generation(Table::Records, b));
    store
        .write_blocking(|tx: &mut WriteTx<'_>| -> Result<(), StoreError> {
            tx.put(Table::Records, b"collection_aaaa\0rec1", b"{}".to_vec());
            Ok(())
        })
        .expect("write");
    assert_eq!(store.generation(Table::Records, a), a0 + 1);
    // A write that is rejected (its closure fails) changes nothing.
    let rejected = store.write_blocking(|tx: &mut WriteTx<'_>| -> Result<(), StoreError> {
        tx.put(Table::Records, b"collection_aaaa\0rec2", b"{}".to_vec());
        Err(StoreError::Internal("no".into()))
    });
    assert!(rejected.is_err());
    assert_eq!(store.generation(Table::Records, a), a0 + 1);
    // Other tables are not tracked.
    let b1 = store.generation(Table::Records, b);
    store
        .write_blocking(|tx: &mut WriteTx<'_>| -> Result<(), StoreError> {
            tx.put(Table::Meta, b"collection_bbbb\0x", b"1".to_vec());
            Ok(())
        })
        .expect("write");
    assert_eq!(store.generation(Table::Records, b), b1);
    // b moved only if it shares a's bucket.
    assert!(b1 == b0 || b1 == store.generation(Table::Records, a));
    assert_eq!(store.generation(Table::Meta, b), 0);
    store.shutdown();
}

#[test]
fn commit_watchers_fire_only_after_commits_that_wrote_their_table() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    store.on_commit(
        Table::SearchOutbox,
        Arc::new(move || {
            seen.fetch_add(1, Ordering::SeqCst);
        }),
    );
    let write = |table: Table, reject: bool| {
        store.write_blocking(move |tx: &mut WriteTx<'_>| -> Result<(), TestError> {
            tx.put(table, b"k", b"v".to_vec());
            if reject {
                Err(TestError::Rejected)
            } else {
                Ok(())
            }
        })
    };
    write(Table::Records, false).expect("write records");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "another table's commit wakes nobody");
    assert!(write(Table::SearchOutbox, true).is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 0, "a rejected write is not committed");
    write(Table::SearchOutbox, false).expect("write outbox");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn a_read_kind_moves_to_the_blocking_pool_only_when_it_keeps_being_slow() {
    use super::ReadPlacement;
    use std::time::Duration;
    let placement = ReadPlacement::default();
    let slow = ReadPlacement::BUDGET + Duration::from_micros(1);
    assert!(placement.inline());
    placement.observe(ReadPlacement::BUDGET);
    // Occasional slow reads among fast ones (a cold cache, preemption) change nothing.
    for _ in 0..100 {
        placement.observe(slow);
        placement.observe(Duration::from_micros(20));
    }
    assert!(placement.inline(), "reads mostly within the budget stay on the async thread");
    for _ in 0..ReadPlacement::STRIKES - 1 {
        placement.observe(slow);
    }
    assert!(placement.inline());
    placement.observe(slow);
    assert!(!placement.inline(), "a kind that keeps being slow moves to the pool");
    for _ in 0..100 {
        placement.observe(Duration::from_micros(1));
    }
    assert!(!placement.inline(), "and stays there");
}

#[test]
fn an_unfinished_creation_is_discarded_and_a_data_file_is_never_half_created() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("data.redb");
    // What a power cut during the very first creation leaves: a torn file under the
    // temporary name, nothing under the real one.
    std::fs::write(super::creating_path(&path), b"torn first pages").expect("write");
    let store = Store::open(&path, &StoreOptions::default()).expect("a fresh file is created");
    put(&store, b"first").expect("write");
    store.shutdown();
    drop(store);
    assert!(path.exists() && !super::creating_path(&path).exists());
    // A leftover next to a complete file is removed; the data file is kept as it is.
    std::fs::write(super::creating_path(&path), b"leftover").expect("write");
    let store = Store::open(&path, &StoreOptions::default()).expect("reopen");
    assert!(store.read_blocking(|tx| tx.get(Table::Records, b"first")).expect("read").is_some());
    assert!(!super::creating_path(&path).exists());
    store.shutdown();
}

#[test]
fn a_damaged_data_file_is_refused_not_replaced() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("data.redb");
    std::fs::write(&path, b"not a database at all").expect("write");
    assert!(Store::open(&path, &StoreOptions::default()).is_err());
    assert_eq!(
        std::fs::read(&path).expect("read"),
        b"not a database at all",
        "the file is left for the operator"
    );
}
