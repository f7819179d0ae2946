//! The integration tests, in one binary (one link of the library and of `support`).
//! They start the real agent (through `agent::run` on port 0, or the real binary)
//! against real Dovecot, Exim, dnsmasq, unbound and nginx on loopback, and — for fault
//! attribution — in network namespaces they build themselves. Every module is one area;
//! `support` holds the peers and the shared scenario builders.
//!
//! Run one area with `scripts/test -- daemon_tcp::` (a test-name filter).

mod support;

mod autodiscover;
mod autodiscover_answers;
mod cli_probe;
mod config_errors;
mod config_files;
mod daemon_dns;
mod daemon_lifecycle;
mod daemon_tcp;
mod diagnose;
mod diagnose_bed;
mod discovery;
mod exchange;
mod fault_domains;
mod fleet;
mod hardening;
mod http_fakes;
mod mail_fakes;
mod mail_real;
mod oauth2;
mod oauth2_exchange;
mod oauth2_lockout;
mod oauth2_secrets;
mod pipeline;
mod prometheus_e2e;
mod prometheus_rules;
mod roundtrip;
mod roundtrip_logins;
mod scale;
mod status_page;
mod web_listener;
mod webmail;
mod webmail_login;
