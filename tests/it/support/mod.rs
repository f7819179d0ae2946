//! Real peers for integration tests: DNS servers (dnsmasq, unbound, a silent
//! one), an HTTPS server (nginx, also as an Exchange stand-in), a test CA and
//! nftables drop rules. Every daemon listens on loopback only (127.0.0.1, or a
//! block of 127.0.0.0/8 of its test's own, see [`exchange::LoopbackBlock`])
//! and is killed when its handle is dropped, except inside a
//! [`netns::TestBed`], a set of network namespaces with their own private
//! addresses.
//! Use with `mod support;` in a file under tests/.
#![allow(dead_code, unused_imports)]

pub mod agent;
pub mod autodiscover;
pub mod binary;
pub mod browser;
pub mod certs;
pub mod cli;
pub mod dnsmasq;
pub mod domain;
pub mod dovecot;
pub mod exchange;
pub mod exim;
pub mod fake;
pub mod idp;
pub mod maildir;
pub mod netns;
pub mod nft;
pub mod nginx;
pub mod oauth2;
pub mod ports;
pub mod process;
pub mod prometheus;
pub mod silent_udp;
pub mod unbound;
pub mod web;

pub use certs::{TestPki, Validity};
pub use dnsmasq::{Dnsmasq, DnsmasqBuilder};
pub use dovecot::{Dovecot, DovecotBuilder};
pub use exim::{Exim, EximBuilder, MailFault};
pub use netns::TestBed;
pub use nft::{Blackhole, DropRule};
pub use nginx::{Nginx, NginxBuilder};
pub use ports::{closed_port, free_port, open_port};
pub use process::{ChildGuard, READY_DEADLINE, StartError, wait_tcp_ready};
pub use silent_udp::SilentDnsServer;
pub use unbound::{Unbound, UnboundBuilder};
