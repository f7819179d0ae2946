//! Every configuration shipped under `config/` loads, and `mailprobe check-config`
//! reports success and failure the way its users and scripts expect.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every `*.yaml` under `dir`, at any depth, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("a readable directory") {
            let path = entry.expect("a readable directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "yaml") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The secrets the shipped configurations name, as the service manager would provide
/// them (set on the child process only: the test never changes its own environment).
const SHIPPED_SECRETS: [(&str, &str); 2] = [
    ("MAILPROBE_IMAP_PASSWORD", "example-imap-password"),
    ("MAILPROBE_SMTP_PASSWORD", "example-smtp-password"),
];

#[test]
fn every_shipped_config_loads_with_uniquely_named_targets() {
    let files = yaml_files(Path::new("config"));
    assert!(!files.is_empty(), "no configuration files under config/");
    for file in files {
        // Through the binary, so the secrets exist only in its environment. Unique
        // names are one of the validator's checks.
        let output = Command::new(env!("CARGO_BIN_EXE_mailprobe"))
            .arg("check-config")
            .arg(&file)
            .envs(SHIPPED_SECRETS)
            .output()
            .expect("run mailprobe check-config");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{} does not load: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let targets: usize = stdout
            .lines()
            .find_map(|line| line.strip_prefix("targets: "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no target count in:\n{stdout}"));
        assert!(targets > 0, "{} has no targets", file.display());
        for (_, secret) in SHIPPED_SECRETS {
            assert!(!stdout.contains(secret), "the summary shows a password");
        }
    }
}

fn check_config(file: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mailprobe"))
        .args(["check-config", file])
        .output()
        .expect("run mailprobe check-config")
}

#[test]
fn check_config_prints_a_summary_of_a_valid_file() {
    let output = check_config("config/default.yaml");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("targets:"), "{stdout}");
}

#[test]
fn check_config_prints_the_error_and_exits_1_for_an_invalid_file() {
    let output = check_config("tests/fixtures/config/unknown_key.yaml");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "tests/fixtures/config/unknown_key.yaml:8:7: targets[0].auth.pasword_file: unknown key \
         `pasword_file`: did you mean `password_file`? (expected one of username, \
         password_file, password_env, oauth2, max_failures)\n"
    );
    assert!(output.stdout.is_empty());
}
