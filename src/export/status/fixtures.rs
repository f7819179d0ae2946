//! Judged results made up for the status page's tests and its render benchmark
//! (`examples/status_render.rs`): no probe runs.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Endpoint, Protocol, Target, TargetSpec, TlsMode};
use crate::judge::{Fault, Judged};
use crate::probe::{ErrorKind, Failure, Phase, ProbeResult, ProtocolFacts};

/// A `tcp` target called `name` on `host:port`, probed every 30 s.
pub fn tcp_target(name: &str, host: &str, port: u16) -> Arc<Target> {
    Arc::new(Target {
        name: Arc::from(name),
        protocol: Protocol::Tcp,
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(10),
        phase_histogram: false,
        spec: TargetSpec::Tcp(Endpoint {
            host: host.into(),
            port,
            tls: TlsMode::None,
            server_name: host.into(),
            extra_roots: Arc::from(Vec::new()),
            auth: None,
        }),
    })
}

/// `seconds` after a fixed day (2023-11-14 22:13:20 UTC).
pub fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
}

/// A result of `target` started at `at(seconds)` taking `millis`: a success when
/// `fault` is `none`, else a refused connection with `message`, judged `fault`.
pub fn judged(
    target: &Arc<Target>,
    seconds: u64,
    millis: u64,
    fault: Fault,
    message: &str,
) -> Arc<Judged> {
    let outcome = match fault {
        Fault::None => Ok(()),
        _ => Err(Failure {
            phase: Phase::Connect,
            kind: ErrorKind::ConnectRefused,
            message: message.into(),
        }),
    };
    Arc::new(Judged {
        target: Arc::clone(target),
        result: ProbeResult {
            target: Arc::clone(&target.name),
            protocol: target.protocol,
            check: None,
            started_at: at(seconds),
            duration: Duration::from_millis(millis),
            phases: Vec::new(),
            outcome,
            peer: None,
            tls: None,
            facts: ProtocolFacts::None,
            log: ["step"].into_iter().collect(),
            login: None,
        },
        fault,
        site: None,
    })
}
