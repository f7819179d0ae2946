//! What the status page shows, as plain data: built once from a [`StatusSnapshot`],
//! serialised as `/api/v1/status` and rendered as the HTML page, so the two always say
//! the same. Field names are a documented contract (docs/endpoints.md).

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use crate::export::status::{Change, Sample, SeriesSnapshot, StatusSnapshot, Uptime};
use crate::judge::json::{JudgedJson, SiteJson};
use crate::judge::{Fault, site_fault, verdict};

/// The agent's version, as `mailprobe --version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A moment: RFC 3339 with milliseconds (UTC) in JSON, `2026-11-30 07:40:40 UTC` on
/// the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time(pub SystemTime);

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = humantime::format_rfc3339_seconds(self.0).to_string();
        write!(
            f,
            "{} UTC",
            text.trim_end_matches('Z').replacen('T', " ", 1)
        )
    }
}

impl Time {
    /// How long before `now` this was, in words: `just now`, `3 min ago`, `2 h 5 min
    /// ago`, `4 d 2 h ago`.
    pub fn ago(&self, now: SystemTime) -> String {
        let seconds = now
            .duration_since(self.0)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let (days, hours, minutes) = (seconds / 86_400, seconds / 3600 % 24, seconds / 60 % 60);
        match (days, hours, minutes) {
            (0, 0, 0) => "just now".to_owned(),
            (0, 0, m) => format!("{m} min ago"),
            (0, h, m) => format!("{h} h {m} min ago"),
            (d, h, _) => format!("{d} d {h} h ago"),
        }
    }
}

/// The whole page.
#[derive(Debug, Serialize)]
pub struct StatusView<'a> {
    /// When the page was made.
    pub generated_at: Time,
    /// The agent: version, configuration, last reload.
    pub agent: AgentView,
    /// The site's latest measurement (`null`: not measured yet).
    pub site: Option<SiteView>,
    /// How many probe series are up, down, not probed yet.
    pub summary: Summary,
    /// Every probe series: failing first, then not yet probed, then healthy.
    pub targets: Vec<TargetView<'a>>,
    /// State changes, newest first.
    pub changes: Vec<ChangeView<'a>>,
}

/// The agent itself.
#[derive(Debug, Serialize)]
pub struct AgentView {
    /// mailprobe's version.
    pub version: &'static str,
    /// The configuration file in force.
    pub config_file: Option<String>,
    /// When it was put in force (the start, or the last successful reload).
    pub config_loaded_at: Option<Time>,
    /// The last reload request (`null`: none since the start).
    pub last_reload: Option<ReloadView>,
}

/// A reload's outcome.
#[derive(Debug, Serialize)]
pub struct ReloadView {
    /// When it was answered.
    pub at: Time,
    /// Whether the new file was put in force.
    pub successful: bool,
    /// Why not (the running configuration was kept).
    pub error: Option<String>,
}

/// The site header: the snapshot as `mailprobe probe --json` shows it, and one line
/// per check in words.
#[derive(Debug, Serialize)]
pub struct SiteView {
    /// Fields `measured_at`, `fault`, `state`, `gateway`, `resolvers`, `canaries`.
    #[serde(flatten)]
    pub snapshot: SiteJson,
    /// One sentence per check: `gateway 10.0.0.1: answers (icmp)`.
    pub lines: Vec<String>,
    /// `ok`, `local` or `unknown`: the page's colour for the site's state.
    #[serde(skip)]
    pub class: &'static str,
    /// When it was measured (the JSON has it in `measured_at`).
    #[serde(skip)]
    pub measured: Time,
}

/// Counts of probe series.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Probe series (an exchange target counts one per check).
    pub series: usize,
    /// Whose latest probe succeeded.
    pub up: usize,
    /// Whose latest probe failed.
    pub down: usize,
    /// Not probed yet.
    pub pending: usize,
}

/// One probe series' row.
#[derive(Debug, Serialize)]
pub struct TargetView<'a> {
    /// `target`, or `target/check` for an exchange check.
    pub name: String,
    /// The configured target name.
    pub target: &'a str,
    /// The Exchange check, for exchange targets.
    pub check: Option<&'static str>,
    /// The protocol.
    pub protocol: &'static str,
    /// What the target probes, in one line.
    pub describes: String,
    /// `up`, `down` or `pending` (not probed yet).
    pub state: &'static str,
    /// Since when it is in that state, as far as this agent saw.
    pub since: Option<Time>,
    /// Successes out of probes in the last hour.
    pub uptime_1h: UptimeView,
    /// Successes out of probes in the last 24 hours.
    pub uptime_24h: UptimeView,
    /// The last results, oldest first.
    pub recent: Vec<SampleView>,
    /// The target's `/debug` page (every result in detail).
    pub debug: String,
    /// The latest result, judged (`null`: not probed yet).
    pub last: Option<JudgedJson<'a>>,
}

/// Uptime over a window.
#[derive(Debug, Serialize)]
pub struct UptimeView {
    /// The share of probes that succeeded (`null`: none in the window).
    pub ratio: Option<f64>,
    /// Probes in the window.
    pub probes: u32,
}

/// One past result.
#[derive(Debug, Serialize)]
pub struct SampleView {
    /// When it started.
    pub at: Time,
    /// How long it took, in milliseconds.
    pub duration_ms: f64,
    /// Whether it succeeded.
    pub success: bool,
    /// Its fault domain.
    pub fault: &'static str,
    /// The failing phase.
    pub phase: Option<&'static str>,
    /// The reason label.
    pub reason: Option<&'static str>,
    /// `ok`, `local`, `server` or `unknown`: whose side, as the bar's colour.
    #[serde(skip)]
    pub class: &'static str,
}

/// One state change.
#[derive(Debug, Serialize)]
pub struct ChangeView<'a> {
    /// When the probe that showed it started.
    pub at: Time,
    /// `target`, or `target/check`.
    pub name: String,
    /// The configured target name.
    pub target: &'a str,
    /// The Exchange check, for exchange targets.
    pub check: Option<&'static str>,
    /// `down`, `up` or `fault_changed`.
    pub change: &'static str,
    /// The fault domain after the change.
    pub fault: &'static str,
    /// The fault domain before it.
    pub previous_fault: &'static str,
    /// The help-desk sentence of the result that showed it.
    pub verdict: &'a str,
}

/// Whose side a fault is on, as a colour class: `ok`, `local` (this site), `server`
/// (the provider and its DNS) or `unknown`.
pub fn side_class(fault: Fault) -> &'static str {
    match fault {
        Fault::None => "ok",
        Fault::LocalNetwork | Fault::LocalDns | Fault::Upstream => "local",
        Fault::RemoteDns
        | Fault::ServerNetwork
        | Fault::ServerService
        | Fault::ServerTls
        | Fault::ServerAuth => "server",
        Fault::Unknown => "unknown",
    }
}

impl<'a> StatusView<'a> {
    /// The view of `snapshot`.
    pub fn of(snapshot: &'a StatusSnapshot) -> StatusView<'a> {
        let targets: Vec<TargetView<'a>> = snapshot.series.iter().map(TargetView::of).collect();
        let mut summary = Summary {
            series: targets.len(),
            ..Summary::default()
        };
        for target in &targets {
            match target.state {
                "up" => summary.up += 1,
                "down" => summary.down += 1,
                _ => summary.pending += 1,
            }
        }
        StatusView {
            generated_at: Time(snapshot.taken_at),
            agent: AgentView {
                version: VERSION,
                config_file: snapshot
                    .config
                    .as_ref()
                    .map(|c| c.file.display().to_string()),
                config_loaded_at: snapshot.config.as_ref().map(|c| Time(c.loaded_at)),
                last_reload: snapshot.reload.as_ref().map(|r| ReloadView {
                    at: Time(r.at),
                    successful: r.error.is_none(),
                    error: r.error.clone(),
                }),
            },
            site: snapshot.site.as_deref().map(|site| SiteView {
                snapshot: SiteJson::of(site),
                lines: verdict::site_lines(site),
                class: side_class(site_fault(site)),
                measured: Time(site.measured_at),
            }),
            summary,
            targets,
            changes: snapshot.changes.iter().map(ChangeView::of).collect(),
        }
    }
}

impl<'a> TargetView<'a> {
    fn of(series: &'a SeriesSnapshot) -> TargetView<'a> {
        let target = &series.target;
        let state = match &series.latest {
            None => "pending",
            Some(latest) if latest.is_success() => "up",
            Some(_) => "down",
        };
        TargetView {
            name: target.display_name(),
            target: &target.name,
            check: target.check().map(|c| c.as_str()),
            protocol: target.protocol.as_str(),
            describes: target.describe(),
            state,
            since: series.since.map(Time),
            uptime_1h: UptimeView::of(series.uptime_hour),
            uptime_24h: UptimeView::of(series.uptime_day),
            recent: series.recent.iter().map(SampleView::of).collect(),
            debug: format!(
                "/debug?target={}",
                url::form_urlencoded::byte_serialize(target.name.as_bytes()).collect::<String>()
            ),
            last: series.latest.as_deref().map(JudgedJson::of),
        }
    }
}

impl UptimeView {
    fn of(uptime: Uptime) -> UptimeView {
        UptimeView {
            ratio: uptime.ratio(),
            probes: uptime.total,
        }
    }
}

impl SampleView {
    fn of(sample: &Sample) -> SampleView {
        SampleView {
            at: Time(sample.at()),
            duration_ms: (sample.duration().as_secs_f64() * 1e6).round() / 1e3,
            success: sample.success(),
            fault: sample.fault().as_metrics_label(),
            phase: sample.phase().map(|p| p.as_metrics_label()),
            reason: sample.kind().map(|k| k.as_metrics_label()),
            class: side_class(sample.fault()),
        }
    }
}

impl<'a> ChangeView<'a> {
    fn of(change: &'a Change) -> ChangeView<'a> {
        ChangeView {
            at: Time(change.at),
            name: match change.check {
                Some(check) => format!("{}/{check}", change.target),
                None => change.target.to_string(),
            },
            target: &change.target,
            check: change.check.map(|c| c.as_str()),
            change: change.kind.as_str(),
            fault: change.fault.as_metrics_label(),
            previous_fault: change.previous.as_metrics_label(),
            verdict: &change.verdict,
        }
    }
}
