//! Read and write transactions as seen by the domain modules.
//!
//! A [`WriteTx`] is one queued write's view of the group-commit transaction: reads see the
//! committed state plus this batch's earlier accepted writes plus its own staged writes;
//! its own writes are staged in an overlay and copied into the real transaction only if
//! the write succeeds. That is what lets one rejected write leave its neighbours intact.

use std::collections::BTreeMap;
use std::ops::Bound;

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::{StoreError, Table};

/// Key-value pairs as loaded by a bulk read.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

type RangeItem<'a> =
    Result<(redb::AccessGuard<'a, &'static [u8]>, redb::AccessGuard<'a, &'static [u8]>), redb::StorageError>;
type OpenTable<'t> = Option<(Table, redb::Table<'t, &'static [u8], &'static [u8]>)>;

/// Whether a scan continues after the current entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanControl {
    Continue,
    Stop,
}

/// A consistent snapshot of the whole store.
pub struct ReadTx {
    txn: redb::ReadTransaction,
}

impl ReadTx {
    pub(super) fn begin(db: &impl ReadableDatabase) -> Result<ReadTx, StoreError> {
        Ok(ReadTx { txn: db.begin_read().map_err(StoreError::from_redb)? })
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let t = self.txn.open_table(table.definition()).map_err(StoreError::from_redb)?;
        let value = t.get(key).map_err(StoreError::from_redb)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Number of entries in `table`.
    pub fn len(&self, table: Table) -> Result<u64, StoreError> {
        let t = self.txn.open_table(table.definition()).map_err(StoreError::from_redb)?;
        t.len().map_err(StoreError::from_redb)
    }

    /// Visits the entries whose key starts with `prefix`, in key order (or reverse), starting
    /// after `after` when given (exclusive; in reverse, before it).
    pub fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        reverse: bool,
        after: Option<&[u8]>,
        visit: impl FnMut(&[u8], &[u8]) -> ScanControl,
    ) -> Result<(), StoreError> {
        let (lower, upper) = prefix_bounds(prefix, reverse, after);
        self.scan_range(table, lower, upper, reverse, visit)
    }

    /// Visits the entries with `lower <= key < upper` (either bound may be open), in key
    /// order or reverse.
    pub fn scan_range(
        &self,
        table: Table,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
        reverse: bool,
        mut visit: impl FnMut(&[u8], &[u8]) -> ScanControl,
    ) -> Result<(), StoreError> {
        let empty = match (&lower, &upper) {
            (Bound::Included(l), Bound::Included(u)) => l > u,
            (Bound::Included(l) | Bound::Excluded(l), Bound::Included(u) | Bound::Excluded(u)) => l >= u,
            _ => false,
        };
        if empty {
            return Ok(());
        }
        let t = self.txn.open_table(table.definition()).map_err(StoreError::from_redb)?;
        let range =
            t.range::<&[u8]>((as_ref_bound(&lower), as_ref_bound(&upper))).map_err(StoreError::from_redb)?;
        let mut step = |entry: RangeItem<'_>| -> Result<ScanControl, StoreError> {
            let (k, v) = entry.map_err(StoreError::from_redb)?;
            Ok(visit(k.value(), v.value()))
        };
        if reverse {
            for entry in range.rev() {
                if step(entry)? == ScanControl::Stop {
                    break;
                }
            }
        } else {
            for entry in range {
                if step(entry)? == ScanControl::Stop {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The values stored under `keys` (in order), opening the table once.
    pub fn get_many(&self, table: Table, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let t = self.txn.open_table(table.definition()).map_err(StoreError::from_redb)?;
        keys.iter()
            .map(|key| {
                let value = t.get(key.as_slice()).map_err(StoreError::from_redb)?;
                Ok(value.map(|v| v.value().to_vec()))
            })
            .collect()
    }
}

fn as_ref_bound(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The smallest key greater than every key starting with `prefix`, if one exists.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Key bounds of a prefix scan that resumes after (or, in reverse, before) `after`.
fn prefix_bounds(prefix: &[u8], reverse: bool, after: Option<&[u8]>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let mut lower = Bound::Included(prefix.to_vec());
    let mut upper = match prefix_end(prefix) {
        Some(end) => Bound::Excluded(end),
        None => Bound::Unbounded,
    };
    if let Some(after) = after {
        if reverse {
            upper = Bound::Excluded(after.to_vec());
        } else {
            lower = Bound::Excluded(after.to_vec());
        }
    }
    (lower, upper)
}

/// Staged changes of one write: `None` marks a deletion.
pub(super) type Overlay = BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>;

/// Work to run once the transaction holding a write is durably committed.
pub type CommitHook = Box<dyn FnOnce() + Send>;

/// One queued write's view of the group-commit transaction.
pub struct WriteTx<'t> {
    txn: &'t redb::WriteTransaction,
    overlay: Overlay,
    hooks: Vec<CommitHook>,
}

impl<'t> WriteTx<'t> {
    pub(super) fn new(txn: &'t redb::WriteTransaction) -> WriteTx<'t> {
        WriteTx { txn, overlay: BTreeMap::new(), hooks: Vec::new() }
    }

    /// Runs `hook` on the writer thread after this write's transaction is durably committed;
    /// dropped unrun if the write is rejected or the commit fails. Keep it cheap (a wake-up).
    pub fn after_commit(&mut self, hook: impl FnOnce() + Send + 'static) {
        self.hooks.push(Box::new(hook));
    }

    /// Visits the entries whose key starts with `prefix` in key order, starting after `after`
    /// (exclusive) when given, including this write's staged changes.
    pub fn scan_prefix(
        &self,
        table: Table,
        prefix: &[u8],
        after: Option<&[u8]>,
        mut visit: impl FnMut(&[u8], &[u8]) -> ScanControl,
    ) -> Result<(), StoreError> {
        let t = self.txn.open_table(table.definition()).map_err(StoreError::from_redb)?;
        let (lower, upper) = prefix_bounds(prefix, false, after);
        let mut range =
            t.range::<&[u8]>((as_ref_bound(&lower), as_ref_bound(&upper))).map_err(StoreError::from_redb)?;
        let staged_lower = match &lower {
            Bound::Included(k) => Bound::Included((table, k.clone())),
            Bound::Excluded(k) => Bound::Excluded((table, k.clone())),
            Bound::Unbounded => Bound::Unbounded,
        };
        let mut staged = self
            .overlay
            .range((staged_lower, Bound::Unbounded))
            .take_while(|((t, k), _)| *t == table && k.starts_with(prefix))
            .peekable();
        let mut stored = match range.next() {
            Some(entry) => {
                let (k, v) = entry.map_err(StoreError::from_redb)?;
                Some((k.value().to_vec(), v.value().to_vec()))
            }
            None => None,
        };
        loop {
            let take_staged = match (&stored, staged.peek()) {
                (None, None) => return Ok(()),
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some((sk, _)), Some(((_, k), _))) => k.as_slice() <= sk.as_slice(),
            };
            let control = if take_staged {
                let Some(((_, key), value)) = staged.next() else { return Ok(()) };
                if stored.as_ref().is_some_and(|(sk, _)| sk == key) {
                    stored = match range.next() {
                        Some(entry) => {
                            let (k, v) = entry.map_err(StoreError::from_redb)?;
                            Some((k.value().to_vec(), v.value().to_vec()))
                        }
                        None => None,
                    };
                }
                match value {
                    Some(v) => visit(key, v),
                    None => ScanControl::Continue,
                }
            } else {
                let Some((key, value)) = stored.take() else { return Ok(()) };
                stored = match range.next() {
                    Some(entry) => {
                        let (k, v) = entry.map_err(StoreError::from_redb)?;
                        Some((k.value().to_vec(), v.value().to_vec()))
                    }
                    None => None,
                };
                visit(&key, &value)
            };
            if control == ScanControl::Stop {
                return Ok(());
            }
        }
    }

    /// The value under `key`, including this write's staged changes.
    pub fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(staged) = self.overlay.get(&(table, key.to_vec())) {
            return Ok(staged.clone());
        }
        let t = self.txn.open_table(table.definition()).map_err(StoreError::from_redb)?;
        let value = t.get(key).map_err(StoreError::from_redb)?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Stages `key = value`.
    pub fn put(&mut self, table: Table, key: &[u8], value: Vec<u8>) {
        self.overlay.insert((table, key.to_vec()), Some(value));
    }

    /// Stages the removal of `key`.
    pub fn delete(&mut self, table: Table, key: &[u8]) {
        self.overlay.insert((table, key.to_vec()), None);
    }

    /// Keys (with values) starting with `prefix`, in key order, including staged changes.
    /// Loads them all: meant for the rare bulk operations (schema migrations, deletes).
    pub fn collect_prefix(&self, table: Table, prefix: &[u8]) -> Result<Entries, StoreError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        {
            let t = self.txn.open_table(table.definition()).map_err(StoreError::from_redb)?;
            let (lower, upper) = prefix_bounds(prefix, false, None);
            let range = t
                .range::<&[u8]>((as_ref_bound(&lower), as_ref_bound(&upper)))
                .map_err(StoreError::from_redb)?;
            for entry in range {
                let (k, v) = entry.map_err(StoreError::from_redb)?;
                merged.insert(k.value().to_vec(), v.value().to_vec());
            }
        }
        let start = (table, prefix.to_vec());
        for ((t, key), value) in self.overlay.range(start..) {
            if *t != table || !key.starts_with(prefix) {
                break;
            }
            match value {
                Some(v) => merged.insert(key.clone(), v.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// Copies the staged changes into the transaction; returns the commit hooks and the set
    /// of tables written (one bit per table, see `Table::bit`). Bumps the write generation
    /// of every segment it changes.
    pub(super) fn apply(self, generations: &Generations) -> Result<(Vec<CommitHook>, u64), StoreError> {
        let hooks = self.hooks;
        let touched = self.overlay.keys().fold(0u64, |set, (table, _)| set | table.bit());
        let mut current: OpenTable<'_> = None;
        for ((table, key), value) in self.overlay {
            generations.bump_key(table, &key);
            let open = match current.take() {
                Some((t, handle)) if t == table => (t, handle),
                other => {
                    drop(other);
                    let handle = self.txn.open_table(table.definition()).map_err(StoreError::from_redb)?;
                    (table, handle)
                }
            };
            let (t, mut handle) = open;
            match value {
                Some(v) => {
                    handle.insert(key.as_slice(), v.as_slice()).map_err(StoreError::from_redb)?;
                }
                None => {
                    handle.remove(key.as_slice()).map_err(StoreError::from_redb)?;
                }
            }
            current = Some((t, handle));
        }
        Ok((hooks, touched))
    }
}

/// Buckets of [`Generations`]; two segments sharing a bucket only cost a spurious "changed".
const GENERATION_BUCKETS: usize = 256;

/// Write generations: a counter per key segment (the key up to its first `0x00`; for
/// [`Table::Records`] the collection id), bumped by the writer when it applies a write to a
/// key in that segment, before the commit. A reader that notes a generation, reads a
/// snapshot, and later (inside a write) finds the generation unchanged knows that no write
/// to that segment was applied in between. Segments hash into buckets, so a change
/// elsewhere can look like a change (never the reverse). Only tables whose keys have
/// segments are tracked: [`Table::Records`].
pub struct Generations {
    buckets: Vec<std::sync::atomic::AtomicU64>,
}

impl Default for Generations {
    fn default() -> Self {
        Generations {
            buckets: (0..GENERATION_BUCKETS).map(|_| std::sync::atomic::AtomicU64::new(0)).collect(),
        }
    }
}

impl Generations {
    fn bucket(segment: &[u8]) -> usize {
        // FNV-1a: a few nanoseconds for a collection id.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in segment {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        (hash % GENERATION_BUCKETS as u64) as usize
    }

    fn tracked(table: Table) -> bool {
        table == Table::Records
    }

    /// The generation of `segment` in `table` (0 for untracked tables).
    pub fn get(&self, table: Table, segment: &[u8]) -> u64 {
        if !Self::tracked(table) {
            return 0;
        }
        self.buckets.get(Self::bucket(segment)).map_or(0, |b| b.load(std::sync::atomic::Ordering::Acquire))
    }

    fn bump_key(&self, table: Table, key: &[u8]) {
        if !Self::tracked(table) {
            return;
        }
        let segment = key.split(|b| *b == 0).next().unwrap_or(key);
        if let Some(bucket) = self.buckets.get(Self::bucket(segment)) {
            bucket.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}
