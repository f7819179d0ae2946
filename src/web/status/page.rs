//! The status page as HTML: `templates/status.html`, compiled by askama.
//!
//! Why askama rather than maud: the page is mostly markup and CSS, and askama keeps it
//! in one HTML file that reads like the page it makes (a reviewer who knows HTML but
//! not Rust can change the layout), while the compiler still checks every field the
//! template names against [`StatusView`] — a typo is a build error, not a blank cell.
//! Values are HTML-escaped by default (`<`, `>`, `&`, `"`, `'`), and the only way out is
//! an explicit `|safe`, which the template never uses: target names, banners and
//! server messages come from configuration files and servers. maud escapes as well and
//! checks its markup at compile time too, but writes the page as Rust macro syntax,
//! which would put the CSS and the layout inside Rust source.
//!
//! No script, no external asset (inline CSS, inline SVG), so the page works with
//! JavaScript disabled and on a site with no internet; `<meta http-equiv="refresh">`
//! reloads it unless `?refresh=0`.
use std::fmt::Write as _;

use askama::Template;

use super::view::{SampleView, StatusView, TargetView, Time, UptimeView};

/// The bar and the sparkline are this many pixels wide per result.
const SLOT_WIDTH: usize = 4;
/// Pixels the sparkline uses vertically (plus a 2-pixel margin top and bottom).
const SPARK_HEIGHT: f64 = 20.0;
/// A server's message is cut to this many characters on the page (the JSON and
/// `/debug` have it whole): enough for an SMTP reply, short enough that 500 failing
/// targets still make a page under a megabyte.
const MESSAGE_CHARS: usize = 200;

/// The page: the view, and the refresh period (`None`: no automatic refresh).
#[derive(Template)]
#[template(path = "status.html")]
pub struct StatusPage<'v, 'a> {
    /// What to show.
    pub view: &'v StatusView<'a>,
    /// Seconds between automatic reloads; `None` turns them off.
    pub refresh: Option<u32>,
}

/// One colour of the history bar: a path of horizontal dashes, one per result.
#[derive(Debug)]
pub struct BarPath {
    /// `ok`, `local`, `server`, `unknown`.
    pub class: &'static str,
    /// SVG path data.
    pub d: String,
}

/// The history bar of one row.
#[derive(Debug)]
pub struct Bar {
    /// One path per colour present.
    pub paths: Vec<BarPath>,
    /// The tooltip: counts and the time span.
    pub title: String,
}

/// The duration sparkline of one row.
#[derive(Debug)]
pub struct Sparkline {
    /// SVG polyline points.
    pub points: String,
    /// The tooltip: the range of durations.
    pub title: String,
}

impl StatusPage<'_, '_> {
    /// `3 min ago`, relative to when the page was made.
    pub fn ago(&self, time: &Time) -> String {
        time.ago(self.view.generated_at.0)
    }

    /// The headline: how many series fail.
    pub fn headline(&self) -> String {
        let summary = &self.view.summary;
        match (summary.down, summary.pending) {
            (0, 0) => format!("All {} probes succeed.", summary.series),
            (0, pending) => format!(
                "No probe fails; {pending} of {} not probed yet.",
                summary.series
            ),
            (down, _) => format!("{down} of {} probes failing.", summary.series),
        }
    }

    /// The headline's colour.
    pub fn headline_class(&self) -> &'static str {
        if self.view.summary.down > 0 {
            "server"
        } else {
            "ok"
        }
    }
}

impl TargetView<'_> {
    /// The state in words.
    pub fn state_word(&self) -> &'static str {
        match self.state {
            "up" => "UP",
            "down" => "DOWN",
            _ => "PENDING",
        }
    }

    /// The colour of whose fault the latest failure is.
    pub fn side_class(&self) -> &'static str {
        self.recent.last().map_or("unknown", |s| s.class)
    }

    /// The last results as a bar, newest on the right: consecutive results of one
    /// colour share a dash path, so a healthy row costs one short path.
    pub fn bar(&self) -> Bar {
        let offset = crate::export::status::RECENT_RESULTS.saturating_sub(self.recent.len());
        let mut paths: Vec<BarPath> = Vec::new();
        let mut run_start = 0;
        for (index, sample) in self.recent.iter().enumerate() {
            let run_ends = self
                .recent
                .get(index + 1)
                .is_none_or(|next| next.class != sample.class);
            if !run_ends {
                continue;
            }
            let x = (offset + run_start) * SLOT_WIDTH;
            let width = (index + 1 - run_start) * SLOT_WIDTH;
            let d = match paths.iter_mut().find(|p| p.class == sample.class) {
                Some(path) => &mut path.d,
                None => {
                    paths.push(BarPath {
                        class: sample.class,
                        d: String::new(),
                    });
                    &mut paths.last_mut().expect("pushed just above").d
                }
            };
            let _ = write!(d, "M{x} 7h{width}");
            run_start = index + 1;
        }
        let failed = self.recent.iter().filter(|s| !s.success).count();
        let title = match (self.recent.first(), self.recent.last()) {
            (Some(oldest), Some(newest)) => format!(
                "last {} results, {} to {}: {} ok, {failed} failed{}",
                self.recent.len(),
                oldest.at,
                newest.at,
                self.recent.len() - failed,
                failure_summary(&self.recent)
            ),
            _ => "no results yet".to_owned(),
        };
        Bar { paths, title }
    }

    /// The probe durations of the last results as a sparkline, scaled to the longest.
    pub fn sparkline(&self) -> Option<Sparkline> {
        if self.recent.len() < 2 {
            return None;
        }
        let longest = self
            .recent
            .iter()
            .map(|s| s.duration_ms)
            .fold(0.0_f64, f64::max);
        let shortest = self
            .recent
            .iter()
            .map(|s| s.duration_ms)
            .fold(f64::INFINITY, f64::min);
        let offset = crate::export::status::RECENT_RESULTS.saturating_sub(self.recent.len());
        let mut points = String::new();
        for (index, sample) in self.recent.iter().enumerate() {
            let x = (offset + index) * SLOT_WIDTH + SLOT_WIDTH / 2;
            let share = if longest > 0.0 {
                sample.duration_ms / longest
            } else {
                0.0
            };
            let y = 2.0 + SPARK_HEIGHT * (1.0 - share);
            let _ = write!(points, "{}{x},{y:.1}", if index > 0 { " " } else { "" });
        }
        Some(Sparkline {
            points,
            title: format!("probe duration: {shortest:.1} to {longest:.1} ms"),
        })
    }

    /// The latest probe's duration, `12.3 ms`.
    pub fn last_duration(&self) -> String {
        self.recent
            .last()
            .map_or_else(String::new, |s| format!("{:.1} ms", s.duration_ms))
    }
}

impl UptimeView {
    /// `99.5 %`, or `–` when nothing was probed in the window.
    pub fn text(&self) -> String {
        match self.ratio {
            Some(ratio) => format!("{:.1} %", ratio * 100.0),
            None => "–".to_owned(),
        }
    }
}

/// `text`, cut to [`MESSAGE_CHARS`] characters.
pub fn short(text: &str) -> String {
    match text.char_indices().nth(MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// ` (3 server side, 1 this site)`: the failures by side, for the bar's tooltip.
fn failure_summary(samples: &[SampleView]) -> String {
    let count = |class| samples.iter().filter(|s| s.class == class).count();
    let parts: Vec<String> = [
        ("server", "server side"),
        ("local", "this site"),
        ("unknown", "unknown"),
    ]
    .into_iter()
    .filter(|(class, _)| count(*class) > 0)
    .map(|(class, words)| format!("{} {words}", count(class)))
    .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// Renders the page.
///
/// # Errors
///
/// Only when writing to the string fails (it does not: askama's errors come from
/// `Display` implementations, and every value here formats infallibly).
pub fn render(view: &StatusView<'_>, refresh: Option<u32>) -> Result<String, askama::Error> {
    StatusPage { view, refresh }.render()
}
