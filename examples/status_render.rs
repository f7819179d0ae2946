//! The status page's render benchmark: a [`Status`] with `TARGETS` targets (default
//! 500), each with a full history (the last 30 results, a day of uptime buckets, its
//! state changes), rendered `RENDERS` times (default 50) as HTML and as JSON, in
//! process and on one thread, as the agent does in `spawn_blocking`. Prints the render
//! times (median, p99, max of the wall time, and the median of the thread's CPU time,
//! the fair figure on a shared machine) and the sizes; asserts nothing (timings are
//! figures, not tests). The goal for 500 targets: under 50 ms and a page under 1 MB.
//!
//! `cargo run --release --example status_render -- [TARGETS] [RENDERS]`
//! (`bench/run status` runs it; `bench/run --smoke` at tiny scale).
//!
//! The mix is heavier than a healthy site: every tenth target fails on the provider's
//! side with a 200-character server message, every tenth flaps (each result differs
//! from the one before, the bar's worst case), every twentieth fails on the site's side.

use std::time::{Duration, Instant};

use mailprobe::export::Status;
use mailprobe::export::status::fixtures::{at, judged, tcp_target};
use mailprobe::judge::Fault;
use mailprobe::web::status::{render_html, render_json};

/// Results recorded per target: more than the 30 the bar keeps, so every ring is full.
const RESULTS_PER_TARGET: u64 = 40;
/// Seconds between two results of a target: the default interval.
const INTERVAL: u64 = 30;

fn main() {
    let mut args = std::env::args().skip(1);
    let targets: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(500);
    let renders: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let message = format!("554 {}", "x".repeat(196));
    let status = Status::default();
    for index in 0..targets {
        let target = tcp_target(
            &format!("target-{index:04}"),
            &format!("mail{}.example.com", index % 7),
            993,
        );
        status.register(&target);
        for step in 0..RESULTS_PER_TARGET {
            let fault = match index % 20 {
                0 | 10 if step > 30 => Fault::ServerService,
                1 | 11 if step % 2 == 0 => Fault::ServerNetwork,
                2 if step > 35 => Fault::LocalNetwork,
                _ => Fault::None,
            };
            let millis = 5 + (index as u64 * 7 + step * 13) % 400;
            status.record(&judged(&target, step * INTERVAL, millis, fault, &message));
        }
    }
    let now = at(RESULTS_PER_TARGET * INTERVAL);

    let (html_times, html) = time(renders, || {
        render_html(&status, now, Some(30)).expect("renders")
    });
    let (json_times, json) = time(renders, || render_json(&status, now).expect("serialises"));
    println!(
        "status page, {targets} targets ({renders} renders each, one thread, {}):",
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        }
    );
    report("html page", &html_times, html.len());
    println!(
        "    the page is {} 1 MB",
        if html.len() < 1_000_000 {
            "under"
        } else {
            "OVER"
        }
    );
    report("json", &json_times, json.len());
}

/// Wall and CPU time of one render.
struct Timing {
    wall: Duration,
    cpu: Duration,
}

/// Runs `render` `renders` times; returns the timings and the last output.
fn time(renders: usize, mut render: impl FnMut() -> String) -> (Vec<Timing>, String) {
    let mut times = Vec::with_capacity(renders);
    let mut last = String::new();
    for _ in 0..renders.max(1) {
        let (start, cpu_start) = (Instant::now(), thread_cpu());
        last = std::hint::black_box(render());
        times.push(Timing {
            wall: start.elapsed(),
            cpu: thread_cpu().saturating_sub(cpu_start),
        });
    }
    (times, last)
}

/// This thread's CPU time (user + system).
fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `now` is.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

fn report(what: &str, times: &[Timing], bytes: usize) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut wall: Vec<Duration> = times.iter().map(|t| t.wall).collect();
    let mut cpu: Vec<Duration> = times.iter().map(|t| t.cpu).collect();
    wall.sort();
    cpu.sort();
    let p99 = wall[(wall.len() * 99 / 100).min(wall.len() - 1)];
    println!(
        "  {what}: wall median {:.2} ms, p99 {:.2} ms, max {:.2} ms; CPU median {:.2} ms; \
         {bytes} bytes ({:.0} KiB)",
        ms(wall[wall.len() / 2]),
        ms(p99),
        ms(wall[wall.len() - 1]),
        ms(cpu[cpu.len() / 2]),
        bytes as f64 / 1024.0,
    );
}
