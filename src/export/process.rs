//! `process_*` metrics read from `/proc/self` at scrape time (Linux).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads resident memory, CPU time and open file descriptors on every scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// A snapshot of the process's resource use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// Resident set size in bytes.
    pub resident_bytes: u64,
    /// User plus system CPU time in seconds.
    pub cpu_seconds: f64,
    /// Open file descriptors.
    pub open_fds: u64,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` where it is not available.
    pub fn read() -> Option<Self> {
        // SAFETY: sysconf has no preconditions; it only reads a system constant.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let ticks = u64::try_from(ticks).ok().filter(|t| *t > 0)?;
        let page = u64::try_from(page).ok().filter(|p| *p > 0)?;
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) may contain spaces and parentheses; the fields we
        // want are counted from the last ')'.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // After the name: state is index 0, utime index 11, stime index 12, rss index 21.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let rss_pages: u64 = fields.get(21)?.parse().ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count() as u64);
        Some(ProcessStats {
            resident_bytes: rss_pages * page,
            cpu_seconds: (utime + stime) as f64 / ticks as f64,
            open_fds,
        })
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = ProcessStats::read() else {
            return Ok(());
        };
        let rss = ConstGauge::new(stats.resident_bytes as i64);
        rss.encode(encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            None,
            rss.metric_type(),
        )?)?;
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let fds = ConstGauge::new(stats.open_fds as i64);
        fds.encode(encoder.encode_descriptor(
            "process_open_fds",
            "Number of open file descriptors",
            None,
            fds.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ProcessStats;

    #[test]
    fn proc_self_is_parsed() {
        let stats = ProcessStats::read().expect("/proc/self is readable on Linux");
        assert!(stats.resident_bytes > 0);
        assert!(stats.open_fds > 0);
    }
}
