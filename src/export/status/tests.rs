use std::mem::size_of;

use super::fixtures::{at, judged, tcp_target};
use super::*;

#[test]
fn keeps_the_last_results_and_orders_failing_series_first() {
    let status = Status::default();
    let good = tcp_target("good", "192.0.2.1", 993);
    let bad = tcp_target("bad", "192.0.2.2", 993);
    let pending = tcp_target("pending", "192.0.2.3", 993);
    for target in [&good, &bad, &pending] {
        status.register(target);
    }
    for step in 0..(RECENT_RESULTS as u64 + 10) {
        status.record(&judged(&good, step * 30, 5, Fault::None, ""));
        status.record(&judged(&bad, step * 30, 5, Fault::ServerService, "refused"));
    }
    let snapshot = status.snapshot(at(39 * 30));
    let names: Vec<&str> = snapshot.series.iter().map(|s| &*s.target.name).collect();
    assert_eq!(names, ["bad", "pending", "good"]);
    let bad = &snapshot.series[0];
    assert_eq!(bad.recent.len(), RECENT_RESULTS);
    assert_eq!(bad.recent.last().map(Sample::at), Some(at(39 * 30)));
    assert_eq!(bad.since, Some(at(0)), "down since its first probe");
    assert_eq!(bad.uptime_hour.ok, 0);
    assert_eq!(bad.uptime_hour.total, 40);
    assert_eq!(snapshot.series[1].latest.as_ref().map(|_| ()), None);
    assert_eq!(snapshot.series[2].uptime_day.ratio(), Some(1.0));
}

#[test]
fn changes_are_down_fault_changed_and_up_newest_first() {
    let status = Status::default();
    let imap = tcp_target("imap", "192.0.2.1", 993);
    status.register(&imap);
    status.record(&judged(&imap, 0, 5, Fault::None, ""));
    status.record(&judged(&imap, 30, 5, Fault::ServerNetwork, "silent"));
    status.record(&judged(&imap, 60, 5, Fault::ServerNetwork, "silent"));
    status.record(&judged(&imap, 90, 5, Fault::Upstream, "silent"));
    // A change of fault domain does not restart "since": down since 30.
    assert_eq!(status.snapshot(at(90)).series[0].since, Some(at(30)));
    status.record(&judged(&imap, 120, 5, Fault::None, ""));
    let snapshot = status.snapshot(at(120));
    let changes: Vec<(ChangeKind, Fault, Fault, SystemTime)> = snapshot
        .changes
        .iter()
        .map(|c| (c.kind, c.fault, c.previous, c.at))
        .collect();
    assert_eq!(
        changes,
        [
            (ChangeKind::Up, Fault::None, Fault::Upstream, at(120)),
            (
                ChangeKind::FaultChanged,
                Fault::Upstream,
                Fault::ServerNetwork,
                at(90)
            ),
            (ChangeKind::Down, Fault::ServerNetwork, Fault::None, at(30)),
        ]
    );
    assert!(
        snapshot.changes[2]
            .verdict
            .contains("does not answer on port 993"),
        "{}",
        snapshot.changes[2].verdict
    );
    assert_eq!(
        snapshot.series[0].since,
        Some(at(120)),
        "up again since 120"
    );
}

#[test]
fn the_change_list_and_forgotten_series_are_bounded() {
    let status = Status::default();
    let flapping = tcp_target("flapping", "192.0.2.1", 25);
    status.register(&flapping);
    for step in 0..(2 * KEPT_CHANGES as u64) {
        let fault = if step % 2 == 0 {
            Fault::ServerService
        } else {
            Fault::None
        };
        status.record(&judged(&flapping, step, 5, fault, "refused"));
    }
    assert_eq!(status.snapshot(at(0)).changes.len(), KEPT_CHANGES);
    status.forget("flapping", None);
    // A late result of a forgotten target does not bring it back.
    status.record(&judged(&flapping, 1000, 5, Fault::None, ""));
    assert!(status.snapshot(at(1000)).series.is_empty());
}

/// The memory cost per series stated in the module documentation: the state, its
/// map key, and the ring of recent results (the latest result is shared with
/// `/debug`'s history and costs a pointer here).
#[test]
fn memory_per_series_is_bounded() {
    let per_series =
        size_of::<SeriesState>() + size_of::<SeriesKey>() + RECENT_RESULTS * size_of::<Sample>();
    assert_eq!(size_of::<Sample>(), 16);
    assert!(per_series <= 1400, "{per_series} bytes per series");
}
