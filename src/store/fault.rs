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

/// A simulated disk for power-loss tests: writes land in a volatile image, `sync_data` makes
/// the volatile image durable, and after `fail_after` mutating operations (writes, length
/// changes, syncs) every I/O call fails, as if the power were cut there. What survives the
/// "crash" is [`PowerLossDisk::durable`]: exactly what was synced, nothing written after.
#[derive(Debug)]
pub struct PowerLossDisk {
    state: std::sync::Mutex<DiskState>,
}

#[derive(Debug)]
struct DiskState {
    volatile: Vec<u8>,
    durable: Vec<u8>,
    ops: u64,
    fail_after: Option<u64>,
}

impl PowerLossDisk {
    /// A disk holding `image` (durable already), failing after `fail_after` mutations.
    pub fn new(image: Vec<u8>, fail_after: Option<u64>) -> Arc<PowerLossDisk> {
        Arc::new(PowerLossDisk {
            state: std::sync::Mutex::new(DiskState {
                volatile: image.clone(),
                durable: image,
                ops: 0,
                fail_after,
            }),
        })
    }

    /// What a power cut leaves: the image as of the last successful sync.
    pub fn durable(&self) -> Vec<u8> {
        self.state.lock().map(|s| s.durable.clone()).unwrap_or_default()
    }

    /// What the disk held at the cut if every unsynced write had reached the platter anyway.
    pub fn volatile(&self) -> Vec<u8> {
        self.state.lock().map(|s| s.volatile.clone()).unwrap_or_default()
    }

    /// Mutating operations so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().map(|s| s.ops).unwrap_or(0)
    }

    fn with<T>(&self, mutate: bool, f: impl FnOnce(&mut DiskState) -> T) -> Result<T, std::io::Error> {
        let mut s = self.state.lock().map_err(|_| injected(5))?;
        if s.fail_after.is_some_and(|n| s.ops >= n) {
            return Err(injected(5));
        }
        if mutate {
            s.ops += 1;
        }
        Ok(f(&mut s))
    }
}

#[derive(Debug)]
struct PowerLossBackend {
    disk: Arc<PowerLossDisk>,
}

impl StorageBackend for PowerLossBackend {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.disk.with(false, |s| s.volatile.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.disk.with(false, |s| {
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(s.volatile.len());
            let end = start.saturating_add(out.len()).min(s.volatile.len());
            out.fill(0);
            out[..end - start].copy_from_slice(&s.volatile[start..end]);
        })
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let len = usize::try_from(len).map_err(|_| injected(27))?;
        self.disk.with(true, |s| s.volatile.resize(len, 0))
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.disk.with(true, |s| s.durable = s.volatile.clone())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let start = usize::try_from(offset).map_err(|_| injected(27))?;
        self.disk.with(true, |s| {
            let end = start + data.len();
            if s.volatile.len() < end {
                s.volatile.resize(end, 0);
            }
            s.volatile[start..end].copy_from_slice(data);
        })
    }

    fn close(&self) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn try_lock_range(&self, _start: Bound<u64>, _end: Bound<u64>) -> Result<bool, BackendError> {
        Ok(true)
    }

    fn try_lock_shared_range(&self, _start: Bound<u64>, _end: Bound<u64>) -> Result<bool, BackendError> {
        Ok(true)
    }

    fn lock_range(&self, _start: Bound<u64>, _end: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }

    fn lock_shared_range(&self, _start: Bound<u64>, _end: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }

    fn unlock_range(&self, _start: Bound<u64>, _end: Bound<u64>) -> Result<(), BackendError> {
        Ok(())
    }

    fn query_lock_range(&self, _start: Bound<u64>, _end: Bound<u64>) -> Result<bool, BackendError> {
        Ok(false)
    }
}

/// Opens a database on a simulated disk.
pub(super) fn open_on_disk(
    builder: &redb::Builder,
    disk: Arc<PowerLossDisk>,
) -> Result<redb::Database, redb::DatabaseError> {
    builder.create_with_backend(PowerLossBackend { disk })
}
