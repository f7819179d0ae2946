//! The deployment kit's Prometheus files, checked by Prometheus's own `promtool`:
//! the alert rules parse (`check rules`), the scrape configuration with its per-site
//! `file_sd` files parses (`check config`), and every alert behaves as its unit tests
//! in `deploy/prometheus/alerts_test.yml` say (`test rules`): one site failing fires
//! MailEndpointDown but not ProviderOutage, every site failing fires ProviderOutage,
//! and so on.
//!
//! `promtool` comes with Debian's `prometheus` package, which `scripts/test` installs.
//! Without it these tests fail (they do not skip): a rule file nobody checks is a rule
//! file that silently never fires.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Bound on one promtool run; each takes well under a second when healthy.
const PROMTOOL_TIMEOUT: Duration = Duration::from_secs(120);

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `promtool` executable on `PATH`, or a failure that says how to get it.
fn promtool() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool is not on PATH: run scripts/test, which installs Debian's \
                 `prometheus` package (it ships promtool), or `apt-get install prometheus`"
            )
        })
}

/// Reads a child's pipe to its end on a thread of its own.
fn drain(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    })
}

/// Runs `promtool ARGS` in the repository root and fails the test unless it exits 0
/// within [`PROMTOOL_TIMEOUT`]; on a timeout the process is killed.
pub(crate) fn run_promtool(args: &[&str]) -> String {
    let promtool = promtool();
    let described = format!("{} {}", promtool.display(), args.join(" "));
    let mut child = Command::new(promtool)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start `{described}`: {error}"));

    // Drain both pipes while waiting, so a chatty promtool cannot block on a full pipe.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    let deadline = Instant::now() + PROMTOOL_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(error) => panic!("waiting for `{described}`: {error}"),
        }
    };
    let Some(status) = status else {
        // The pipes are not joined: anything the killed process left behind (it
        // should leave nothing) could hold them open.
        panic!("`{described}` did not finish within {PROMTOOL_TIMEOUT:?} and was killed");
    };
    let output = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default()
    );
    assert!(status.success(), "`{described}` failed: {status}\n{output}");
    output
}

#[test]
fn promtool_check_rules_accepts_the_alert_rules() {
    let output = run_promtool(&["check", "rules", "deploy/prometheus/alerts.yml"]);
    assert!(output.contains("SUCCESS"), "{output}");
}

#[test]
fn promtool_check_config_accepts_the_scrape_config_and_its_site_files() {
    // Also parses every sites/*.yml file_sd file and the rule files it names.
    let output = run_promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
    assert!(output.contains("SUCCESS"), "{output}");
}

#[test]
fn promtool_test_rules_passes_every_alert_unit_test() {
    let output = run_promtool(&["test", "rules", "deploy/prometheus/alerts_test.yml"]);
    assert!(output.contains("SUCCESS"), "{output}");
    assert!(!output.contains("FAILED"), "{output}");
}

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    alert: Option<String>,
}

#[derive(Deserialize)]
struct TestFile {
    tests: Vec<TestCase>,
}

#[derive(Deserialize)]
struct TestCase {
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
}

#[derive(Deserialize)]
struct AlertTest {
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<serde::de::IgnoredAny>,
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

#[test]
fn every_alert_has_a_unit_test_where_it_fires_and_one_where_it_does_not() {
    assert_every_alert_tested(
        "deploy/prometheus/alerts.yml",
        &[],
        "deploy/prometheus/alerts_test.yml",
        7,
    );
}

/// Fails unless every alert of the rule file `rules` (a path from the repository
/// root) has a unit test in `tests` in which it fires, and — but for the agent's own
/// `Mailprobe*` alerts — one in which it must not; unless it has at least `at_least`
/// alerts; and if `tests` names an alert neither in `rules` nor in `also_loaded`.
pub(crate) fn assert_every_alert_tested(
    rules: &str,
    also_loaded: &[&str],
    tests: &str,
    at_least: usize,
) {
    let tests: TestFile =
        serde_saphyr::from_str(&read(tests)).unwrap_or_else(|e| panic!("{tests} parses: {e}"));
    let alerts = alert_names(rules);
    assert!(alerts.len() >= at_least, "alerts found: {alerts:?}");
    let known: BTreeSet<String> = also_loaded
        .iter()
        .flat_map(|file| alert_names(file))
        .chain(alerts.iter().cloned())
        .collect();
    let cases = || tests.tests.iter().flat_map(|case| &case.alert_rule_test);
    let firing: BTreeSet<String> = cases()
        .filter(|case| !case.exp_alerts.is_empty())
        .map(|case| case.alertname.clone())
        .collect();
    let silent: BTreeSet<String> = cases()
        .filter(|case| case.exp_alerts.is_empty())
        .map(|case| case.alertname.clone())
        .collect();

    let never_fired: Vec<_> = alerts.difference(&firing).collect();
    assert!(
        never_fired.is_empty(),
        "alerts without a test in which they fire: {never_fired:?}"
    );
    // The agent's own alerts are trivial comparisons; every fault alert must also be
    // shown not to fire (pending, or a near miss).
    let never_silent: Vec<_> = alerts
        .iter()
        .filter(|alert| !alert.starts_with("Mailprobe"))
        .filter(|alert| !silent.contains(*alert))
        .collect();
    assert!(
        never_silent.is_empty(),
        "alerts without a test in which they must not fire: {never_silent:?}"
    );
    let unknown: Vec<_> = firing
        .union(&silent)
        .filter(|a| !known.contains(*a))
        .collect();
    assert!(
        unknown.is_empty(),
        "tests name alerts that do not exist: {unknown:?}"
    );
}

/// The alert names of a rule file (a path from the repository root).
fn alert_names(file: &str) -> BTreeSet<String> {
    let parsed: RuleFile =
        serde_saphyr::from_str(&read(file)).unwrap_or_else(|e| panic!("{file} parses: {e}"));
    parsed
        .groups
        .iter()
        .flat_map(|group| &group.rules)
        .filter_map(|rule| rule.alert.clone())
        .collect()
}
