//! Process and host figures from `sysinfo`: CPU, memory, RSS, open files, uptime, and the
//! free space of the disk holding the data directory.
//!
//! Refreshing `sysinfo` reads `/proc`, so it is done on the blocking pool, at most once a
//! second (scrapes and the history sampler share the last reading).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sysinfo::{Disks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// One reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostReading {
    /// CPU used by this process, percent of one core.
    pub process_cpu_percent: f64,
    pub process_rss_bytes: u64,
    pub process_virtual_bytes: u64,
    pub process_open_files: u64,
    pub process_uptime_secs: u64,
    /// CPU used by the whole host, percent of all cores.
    pub host_cpu_percent: f64,
    pub host_memory_total_bytes: u64,
    pub host_memory_available_bytes: u64,
    pub host_load1: f64,
    pub host_uptime_secs: u64,
    /// Free and total bytes of the file system holding the data directory.
    pub disk_free_bytes: u64,
    pub disk_total_bytes: u64,
}

struct State {
    /// `None` where sysinfo cannot read this platform's figures.
    system: Option<System>,
    disks: Option<Disks>,
    last: Option<(Instant, HostReading)>,
}

/// The host probe.
pub struct Host {
    dir: PathBuf,
    pid: Option<Pid>,
    started: Instant,
    state: Mutex<State>,
}

/// Readings younger than this are reused.
const FRESH: Duration = Duration::from_secs(1);

impl Host {
    pub fn new(dir: &Path) -> Host {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        Host {
            dir,
            pid: sysinfo::get_current_pid().ok(),
            started: Instant::now(),
            state: Mutex::new(State { system: System::new().ok(), disks: Disks::new().ok(), last: None }),
        }
    }

    /// A fresh (at most a second old) reading. Blocking: call it off the executor.
    pub fn read_blocking(&self) -> HostReading {
        let Ok(mut state) = self.state.lock() else { return HostReading::default() };
        if let Some((at, reading)) = &state.last {
            if at.elapsed() < FRESH {
                return reading.clone();
            }
        }
        let State { system, disks, .. } = &mut *state;
        let mut reading = HostReading {
            host_load1: System::load_average().map(|l| l.one).unwrap_or(0.0),
            host_uptime_secs: System::uptime().unwrap_or(0),
            process_uptime_secs: self.started.elapsed().as_secs(),
            ..HostReading::default()
        };
        if let Some(system) = system.as_mut() {
            system.refresh_memory();
            system.refresh_cpu_usage();
            reading.host_cpu_percent = f64::from(system.global_cpu_usage());
            reading.host_memory_total_bytes = system.total_memory();
            reading.host_memory_available_bytes = system.available_memory();
        }
        if let (Some(pid), Some(system)) = (self.pid, system.as_mut()) {
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                true,
                ProcessRefreshKind::nothing().with_memory().with_cpu(),
            );
            if let Some(process) = system.process(pid) {
                reading.process_cpu_percent = f64::from(process.cpu_usage());
                reading.process_rss_bytes = process.memory();
                reading.process_virtual_bytes = process.virtual_memory();
            }
        }
        reading.process_open_files =
            std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0);
        if let Some(disks) = disks.as_mut() {
            disks.refresh(true);
        }
        // The file system whose mount point is the longest prefix of the data directory.
        let disk = disks.as_ref().and_then(|d| {
            d.iter()
                .filter(|d| self.dir.starts_with(d.mount_point()))
                .max_by_key(|d| d.mount_point().as_os_str().len())
        });
        if let Some(disk) = disk {
            reading.disk_free_bytes = disk.available_space();
            reading.disk_total_bytes = disk.total_space();
        }
        state.last = Some((Instant::now(), reading.clone()));
        reading
    }

    /// [`Host::read_blocking`] on the blocking pool.
    pub async fn read(self: &std::sync::Arc<Self>) -> HostReading {
        let host = self.clone();
        tokio::task::spawn_blocking(move || host.read_blocking()).await.unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_sees_this_process_and_the_data_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let host = Host::new(dir.path());
        let r = host.read_blocking();
        assert!(r.process_rss_bytes > 0, "{r:?}");
        assert!(r.process_open_files > 0, "{r:?}");
        assert!(r.host_memory_total_bytes >= r.host_memory_available_bytes, "{r:?}");
        assert!(r.disk_total_bytes > 0 && r.disk_free_bytes <= r.disk_total_bytes, "{r:?}");
    }
}
