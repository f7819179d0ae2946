//! `process_*` metrics read from `/proc/self` at scrape time (Linux).

use super::metrics::text::{Kind, Value, Writer};

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

impl ProcessStats {
    /// Writes `process_resident_memory_bytes`, `process_cpu_seconds_total` and
    /// `process_open_fds`.
    pub(crate) fn write(&self, writer: &mut Writer<'_>) {
        writer.family(
            "process_resident_memory_bytes",
            Kind::Gauge,
            "Resident memory size in bytes",
        );
        let rss = Value::Count(self.resident_bytes);
        writer.sample("process_resident_memory_bytes", "", &[], rss);
        writer.family(
            "process_cpu_seconds",
            Kind::Counter,
            "Total user and system CPU time spent in seconds",
        );
        let cpu = Value::Float(self.cpu_seconds);
        writer.sample("process_cpu_seconds_total", "", &[], cpu);
        writer.family(
            "process_open_fds",
            Kind::Gauge,
            "Number of open file descriptors",
        );
        writer.sample("process_open_fds", "", &[], Value::Count(self.open_fds));
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
