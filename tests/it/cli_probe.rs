//! `mailprobe probe --config FILE TARGET`: the phases, the reason and a verdict a
//! help-desk person understands, with exit 0 healthy, 1 fault, 2 usage error.

use crate::support::cli::{config_file, mailprobe};

fn probe(config: &str, target: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), config);
    let run = mailprobe(&["probe", "--config", &path, target]);
    (run.code, run.stdout, run.stderr)
}

fn config(port: u16) -> String {
    format!(
        "site: {{gateway: none, resolvers: [\"127.0.0.1:9\"]}}\n\
         targets:\n  - {{name: imaps, protocol: tcp, host: 127.0.0.1, port: {port}, timeout: 2s}}\n"
    )
}

#[test]
fn a_refused_port_is_a_server_side_fault_with_exit_1() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (code, stdout, _) = probe(&config(port), "imaps");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("reason: connect_refused"), "{stdout}");
    assert!(stdout.contains("fault domain: server_service"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "127.0.0.1 refused the connection on port {port}: the mail service is down (server side)."
        )),
        "{stdout}"
    );
}

#[test]
fn a_healthy_target_exits_0() {
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = open.local_addr().unwrap().port();
    let (code, stdout, _) = probe(&config(port), "imaps");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("fault domain: none"), "{stdout}");
    assert!(stdout.contains("imaps is healthy"), "{stdout}");
}

#[test]
fn an_unknown_target_is_a_usage_error_with_exit_2() {
    let (code, _, stderr) = probe(&config(1), "nope");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("no target `nope`") && stderr.contains("imaps"),
        "{stderr}"
    );
}
