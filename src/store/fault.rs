//! Fault injection for the data file, for tests of failed commits and recovery.
//!
//! A [`FaultInjector`] set in [`super::StoreOptions::faults`] wraps redb's file backend: it
//! can make every `fsync` or every write fail with an I/O error (EIO, or ENOSPC to simulate
//! a full disk) until switched off. The production path never sets it.

use std::fs::OpenOptions;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Which I/O error to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No fault: I/O passes through.
    None = 0,
    /// `sync_data` fails with EIO.
    SyncFails = 1,
    /// `write` and `set_len` fail with ENOSPC (disk full).
    DiskFull = 2,
}

/// A switch shared between a test and the store's backend.
#[derive(Debug, Default)]
pub struct FaultInjector {
    mode: AtomicU8,
    syncs: AtomicU64,
}

impl FaultInjector {
    /// Sets the fault to inject from now on.
    pub fn set(&self, fault: Fault) {
        self.mode.store(fault as u8, Ordering::SeqCst);
    }

    /// Successful `sync_data` calls so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    fn current(&self) -> u8 {
        self.mode.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct FaultyBackend {
    inner: FileBackend,
    faults: Arc<FaultInjector>,
}

fn injected(code: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(code)
}

impl StorageBackend for FaultyBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        if self.faults.current() == Fault::DiskFull as u8 && len > self.inner.len()? {
            return Err(injected(28));
        }
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        if self.faults.current() == Fault::SyncFails as u8 {
            return Err(injected(5));
        }
        self.inner.sync_data()?;
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        if self.faults.current() == Fault::DiskFull as u8 {
            return Err(injected(28));
        }
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

/// Opens `path` through the fault-injecting backend.
pub(super) fn open(
    builder: &redb::Builder,
    path: &Path,
    faults: Arc<FaultInjector>,
) -> Result<redb::Database, redb::DatabaseError> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    let inner = FileBackend::new(file)?;
    builder.create_with_backend(FaultyBackend { inner, faults })
}
