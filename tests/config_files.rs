//! Every configuration shipped under `config/` loads, and `mailprobe check-config`
//! reports success and failure the way its users and scripts expect.

use std::collections::HashSet;
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

#[test]
fn every_shipped_config_loads_with_uniquely_named_targets() {
    let files = yaml_files(Path::new("config"));
    assert!(!files.is_empty(), "no configuration files under config/");
    for file in files {
        let config = mailprobe::config::load(&file)
            .unwrap_or_else(|error| panic!("{} does not load: {error}", file.display()));
        assert!(
            !config.targets.is_empty(),
            "{} has no targets",
            file.display()
        );
        let mut names = HashSet::new();
        for target in &config.targets {
            assert!(
                names.insert(target.name.clone()),
                "{}: target name `{}` is used twice",
                file.display(),
                target.name
            );
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
         password_file, password_env)\n"
    );
    assert!(output.stdout.is_empty());
}
