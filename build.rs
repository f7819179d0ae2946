//! Records the source revision for `mailprobe_build_info{revision}`.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MAILPROBE_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let revision = std::env::var("MAILPROBE_REVISION").ok().or_else(|| {
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    });
    println!(
        "cargo:rustc-env=MAILPROBE_REVISION={}",
        revision.unwrap_or_else(|| "unknown".to_owned())
    );
}
