//! Is this site's own network healthy? The [`monitor`] measures the gateway, the site
//! and reference resolvers and the canaries and publishes snapshots; a snapshot
//! ([`SiteContext`]) is plain data that the judge reads.

mod context;
pub mod monitor;

pub use context::{CanaryHealth, GatewayMethod, GatewayState, ResolverHealth, SiteContext};
pub use monitor::{SITE_CHECK_TIMEOUT, SiteMonitor, Snapshot};
