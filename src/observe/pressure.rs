//! Load shedding: how many requests run at once, and what happens when the process uses
//! more memory than it may.
//!
//! Every request (except the probes and `/metrics`) asks [`Pressure::admit`] for a slot.
//! Above `[limits] max_in_flight` running requests the answer is a 503 with
//! `Retry-After` before any work is done. The resident set size is sampled every 25 ms;
//! from two thirds of `[limits] max_rss_mb` on, the slot count drops to
//! `[limits] pressure_in_flight`, so the server keeps answering at reduced concurrency
//! (memory that the allocator keeps after a burst never locks clients out) while the
//! requests that hold memory finish. Shedding starts below the cap because the requests
//! already admitted still grow: the last third is their headroom. It stops again below
//! half the cap, so the state does not flap on the edge.
//!
//! A slot is held until a large answer has been handed to the connection
//! (`api::held`), so bodies still being sent to slow readers count as running.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Limits;

/// Why a request was refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// `max_in_flight` requests are already running.
    InFlight,
    /// The process is above its memory cap and the reduced slot count is used up.
    Memory,
}

impl Shed {
    /// Seconds a client should wait before retrying.
    pub fn retry_after_secs(self) -> u64 {
        match self {
            Shed::InFlight => 1,
            Shed::Memory => 2,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Shed::InFlight => "in_flight",
            Shed::Memory => "memory",
        }
    }
}

/// The admission state of a running server.
pub struct Pressure {
    max_in_flight: usize,
    pressure_in_flight: usize,
    max_rss_bytes: u64,
    in_flight: AtomicUsize,
    peak_in_flight: AtomicUsize,
    rss_bytes: AtomicU64,
    over_memory: AtomicBool,
    shed_in_flight: AtomicU64,
    shed_memory: AtomicU64,
}

/// A running request's slot; released on drop. The guard keeps it alive until a
/// large response body has been handed to the connection, so bodies still being sent
/// count against the limit (see `api::held`).
pub struct Slot(Arc<Pressure>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pressure {
    pub fn new(limits: &Limits) -> Pressure {
        Pressure {
            max_in_flight: limits.max_in_flight.max(1),
            pressure_in_flight: limits.pressure_in_flight.max(1),
            max_rss_bytes: limits.max_rss_mb.saturating_mul(1 << 20),
            in_flight: AtomicUsize::new(0),
            peak_in_flight: AtomicUsize::new(0),
            rss_bytes: AtomicU64::new(0),
            over_memory: AtomicBool::new(false),
            shed_in_flight: AtomicU64::new(0),
            shed_memory: AtomicU64::new(0),
        }
    }

    /// A slot for one request, or why there is none.
    pub fn admit(self: &Arc<Self>) -> Result<Slot, Shed> {
        let over_memory = self.over_memory.load(Ordering::Acquire);
        let (limit, reason) = if over_memory {
            (self.pressure_in_flight.min(self.max_in_flight), Shed::Memory)
        } else {
            (self.max_in_flight, Shed::InFlight)
        };
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if before >= limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            match reason {
                Shed::InFlight => self.shed_in_flight.fetch_add(1, Ordering::Relaxed),
                Shed::Memory => self.shed_memory.fetch_add(1, Ordering::Relaxed),
            };
            return Err(reason);
        }
        self.peak_in_flight.fetch_max(before + 1, Ordering::Relaxed);
        Ok(Slot(Arc::clone(self)))
    }

    /// Requests running now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Most requests that ran at once since start.
    pub fn peak_in_flight(&self) -> usize {
        self.peak_in_flight.load(Ordering::Relaxed)
    }

    /// Requests refused for each reason since start.
    pub fn shed_counts(&self) -> [(Shed, u64); 2] {
        [
            (Shed::InFlight, self.shed_in_flight.load(Ordering::Relaxed)),
            (Shed::Memory, self.shed_memory.load(Ordering::Relaxed)),
        ]
    }

    /// True while the process is above its memory cap.
    pub fn is_over_memory(&self) -> bool {
        self.over_memory.load(Ordering::Acquire)
    }

    /// The last sampled resident set size, in bytes (0 before the first sample or where
    /// the platform has no `/proc`).
    pub fn rss_bytes(&self) -> u64 {
        self.rss_bytes.load(Ordering::Relaxed)
    }

    /// Records one RSS reading and switches memory shedding on or off.
    fn observe_rss(&self, rss: u64) {
        self.rss_bytes.store(rss, Ordering::Relaxed);
        if self.max_rss_bytes == 0 {
            return;
        }
        let was = self.over_memory.load(Ordering::Acquire);
        let on = self.max_rss_bytes / 3 * 2;
        let off = self.max_rss_bytes / 2;
        let now = if was { rss >= off } else { rss >= on };
        if now != was {
            self.over_memory.store(now, Ordering::Release);
            if now {
                tracing::warn!(
                    rss_mb = rss >> 20,
                    cap_mb = self.max_rss_bytes >> 20,
                    "memory above the cap: shedding load"
                );
            } else {
                tracing::info!(rss_mb = rss >> 20, "memory below the cap again");
            }
        }
    }

    /// Samples the RSS every 25 ms until `stop` changes (a burst can allocate hundreds
    /// of MiB in 100 ms).
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_millis(25));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // Read inline: procfs is generated from kernel memory and never waits
                    // on a disk, and under overload the blocking pool is exactly what is
                    // busy, which would delay the reading that starts the shedding.
                    if let Some(rss) = read_rss() {
                        self.observe_rss(rss);
                    }
                }
                _ = stop.changed() => break,
            }
        }
    }
}

/// The resident set size of this process from `/proc/self/statm`, in bytes.
fn read_rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // Linux on the platforms we build for uses 4 KiB pages.
    Some(pages * 4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pressure(max: usize, reduced: usize, rss_mb: u64) -> Arc<Pressure> {
        Arc::new(Pressure::new(&Limits {
            max_in_flight: max,
            pressure_in_flight: reduced,
            max_rss_mb: rss_mb,
            ..Limits::default()
        }))
    }

    #[test]
    fn slots_are_capped_and_released() {
        let p = pressure(2, 1, 0);
        let a = p.admit().expect("first");
        let b = p.admit().expect("second");
        assert_eq!(p.admit().err(), Some(Shed::InFlight));
        drop(a);
        let c = p.admit().expect("released slot is reused");
        assert_eq!(p.in_flight(), 2);
        drop((b, c));
        assert_eq!(p.in_flight(), 0);
        assert_eq!(p.peak_in_flight(), 2);
        assert_eq!(p.shed_counts()[0].1, 1);
    }

    #[test]
    fn memory_pressure_lowers_the_slot_count_with_hysteresis() {
        let p = pressure(8, 1, 100);
        p.observe_rss(66 << 20);
        assert!(!p.is_over_memory());
        p.observe_rss(67 << 20);
        assert!(p.is_over_memory());
        let one = p.admit().expect("the reduced count still admits one");
        assert_eq!(p.admit().err(), Some(Shed::Memory));
        drop(one);
        // Between half and two thirds of the cap the state holds.
        p.observe_rss(55 << 20);
        assert!(p.is_over_memory());
        p.observe_rss(49 << 20);
        assert!(!p.is_over_memory());
        let _slots: Vec<_> = (0..8).map(|_| p.admit().expect("full count again")).collect();
        assert_eq!(p.shed_counts()[1].1, 1);
    }

    #[test]
    fn a_zero_cap_never_sheds_on_memory() {
        let p = pressure(4, 1, 0);
        p.observe_rss(u64::MAX);
        assert!(!p.is_over_memory());
    }

    #[test]
    fn rss_is_read_from_proc() {
        let rss = read_rss().expect("linux has /proc/self/statm");
        assert!(rss > 1 << 20, "{rss}");
    }
}
