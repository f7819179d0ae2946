//! `mailprobe diagnose` against the namespace test bed's provider (see
//! tests/it/support/netns.rs): the real binary runs in the site namespace and discovers
//! `example.test` through the bed's site and reference resolvers (MX, and SRV
//! `_imaps._tcp` → mail.example.test:993), probes the provider's real Dovecot and Exim,
//! and blames the right fault domain when Dovecot is stopped (`server_service`) and
//! when the uplink is dropped (`upstream`, README "How mailprobe decides whose fault
//! it is", rule 4: every resolver fails and no canary answers).

use std::path::Path;

use crate::support::cli;
use crate::support::netns::{DOMAIN, MAIL_HOST, MX_HOST, TestBed};
use serde_json::Value;

/// Exit code, parsed JSON report, and stdout+stderr for assertion messages.
struct Run {
    code: Option<i32>,
    report: Value,
    context: String,
}

/// A config that validates: the bed's resolvers, canary and CA, and one dummy
/// target (diagnose replaces the targets with its own).
fn write_config(bed: &TestBed, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("site.yaml");
    let text = format!(
        "site: {{gateway: auto, resolvers: [\"{}\"], reference_resolvers: [\"{}\"], canaries: [\"{}\"]}}\n\
         tls: {{ca_file: \"{}\"}}\n\
         targets:\n  - {{name: unused, protocol: tcp, host: 127.0.0.1, port: 9}}\n",
        bed.site_resolver,
        bed.reference_resolver,
        bed.canary,
        bed.ca_pem.display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// Runs `mailprobe diagnose probe@example.test --json` in the site namespace,
/// killing it if it outlives [`cli::RUN_LIMIT`] (the checks use `--timeout 3s`).
fn diagnose(bed: &TestBed, config: &Path) -> Run {
    // `ip netns exec` execs the binary, so the pid `cli::run` kills is mailprobe's own.
    let mut command = bed.command_in_site(env!("CARGO_BIN_EXE_mailprobe"));
    command
        .args(["diagnose", "probe@example.test", "--config"])
        .arg(config)
        .args(["--json", "--timeout", "3s"]);
    let run = cli::run(command);
    Run {
        code: run.code,
        report: run.json(),
        context: format!("stdout:\n{}\nstderr:\n{}", run.stdout, run.stderr),
    }
}

/// The `services` entry for `protocol` on `port`.
fn service<'a>(run: &'a Run, protocol: &str, port: u16) -> &'a Value {
    run.report["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["protocol"] == protocol && s["port"] == port)
        .unwrap_or_else(|| panic!("no {protocol} endpoint on port {port}:\n{}", run.context))
}

/// Asserts exit 1, `faults == [domain]`, and a verdict naming `domain`.
fn assert_fault(run: &Run, domain: &str) {
    assert_eq!(run.code, Some(1), "{}", run.context);
    assert_eq!(run.report["healthy"], false, "{}", run.context);
    assert_eq!(
        run.report["faults"],
        serde_json::json!([domain]),
        "{}",
        run.context
    );
    let verdict = run.report["verdict"].as_str().expect("verdict");
    eprintln!("{domain}: {verdict}");
    assert!(verdict.contains(domain), "{verdict}\n{}", run.context);
}

#[test]
fn diagnose_finds_the_bed_provider_and_blames_service_and_uplink_faults() {
    let mut bed = TestBed::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(&bed, dir.path());

    // Healthy: IMAPS from SRV works; MX is found on both resolvers.
    let run = diagnose(&bed, &config);
    assert_eq!(run.code, Some(0), "{}\n{}", run.context, bed.dovecot_log());
    assert_eq!(run.report["healthy"], true, "{}", run.context);
    let imaps = service(&run, "imap", bed.imaps.port());
    assert_eq!(imaps["host"], MAIL_HOST, "{}", run.context);
    assert_eq!(imaps["tls"], "implicit", "{}", run.context);
    assert_eq!(imaps["source"], "SRV _imaps._tcp", "{}", run.context);
    assert_eq!(imaps["status"], "ok", "{}", run.context);
    let mx = run.report["dns"]
        .as_array()
        .expect("dns")
        .iter()
        .find(|d| d["name"] == DOMAIN && d["record"] == "MX")
        .unwrap_or_else(|| panic!("no MX question:\n{}", run.context));
    assert_eq!(mx["status"], "found", "{}", run.context);
    for role in ["site", "reference"] {
        let answer = mx["answers"]
            .as_array()
            .expect("answers")
            .iter()
            .find(|a| a["role"] == role)
            .unwrap_or_else(|| panic!("no {role} answer for MX:\n{}", run.context));
        let text = answer["answer"].as_str().unwrap_or_default();
        assert!(text.contains(MX_HOST), "{role}: {text}\n{}", run.context);
    }

    // Dovecot stopped: IMAPS is refused, the provider's service is at fault.
    bed.stop_dovecot();
    let run = diagnose(&bed, &config);
    assert_fault(&run, "server_service");
    assert_eq!(
        service(&run, "imap", bed.imaps.port())["fault"],
        "server_service",
        "{}",
        run.context
    );
    bed.start_dovecot();

    // Uplink dropped at the router: no resolver answers for example.test and the
    // canary is silent, so discovery fails on the uplink's side.
    bed.drop_uplink();
    let run = diagnose(&bed, &config);
    bed.restore_uplink();
    assert_fault(&run, "upstream");
    // The domain does publish SRV records; they only could not be looked up. The
    // verdict must not send the help desk to the provider for server names.
    let verdict = run.report["verdict"].as_str().expect("verdict");
    assert!(!verdict.contains("Ask the provider"), "{verdict}");
}
