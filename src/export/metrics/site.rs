//! The site-context families: gateway, resolvers, canaries and the site's fault.

use prometheus_client::encoding::EncodeLabelSet;

use super::Metrics;
use crate::judge::Fault;
use crate::site::{GatewayState, SiteContext};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct GatewayLabels {
    gateway: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct SiteResolverLabels {
    resolver: String,
    role: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct CanaryLabels {
    canary: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct DomainLabels {
    domain: &'static str,
}

/// The label set of a metric without labels, as a family so it can be removed.
pub(super) type NoLabels = Vec<(String, String)>;

impl Metrics {
    /// Forgets every site series (a new configuration may check other resolvers) and
    /// marks the site fault `unknown` until the first measurement.
    pub fn clear_site(&self) {
        self.site_gateway_up.clear();
        self.site_gateway_info.clear();
        self.site_resolver_up.clear();
        self.site_resolver_duration.clear();
        self.site_canary_up.clear();
        self.set_site_fault(Fault::Unknown);
    }

    /// Records one measurement of the site context.
    pub fn record_site(&self, site: &SiteContext) {
        match &site.gateway {
            GatewayState::NotChecked => {
                self.site_gateway_up.clear();
                self.site_gateway_info.clear();
            }
            GatewayState::NoDefaultRoute => {
                self.site_gateway_up.get_or_create(&NoLabels::new()).set(0);
                self.site_gateway_info.clear();
            }
            GatewayState::Checked {
                address,
                up,
                method,
            } => {
                self.site_gateway_up
                    .get_or_create(&NoLabels::new())
                    .set(i64::from(*up));
                let labels = GatewayLabels {
                    gateway: address.to_string(),
                    method: method.as_str(),
                };
                if self.site_gateway_info.get(&labels).is_none() {
                    self.site_gateway_info.clear();
                    self.site_gateway_info.get_or_create(&labels).set(1);
                }
            }
        }
        for resolver in &site.resolvers {
            let labels = SiteResolverLabels {
                resolver: resolver.resolver.clone(),
                role: resolver.role.as_str(),
            };
            self.site_resolver_up
                .get_or_create(&labels)
                .set(i64::from(resolver.up));
            self.site_resolver_duration
                .get_or_create(&labels)
                .set(resolver.duration.as_secs_f64());
        }
        for canary in &site.canaries {
            self.site_canary_up
                .get_or_create(&CanaryLabels {
                    canary: canary.canary.clone(),
                })
                .set(i64::from(canary.up));
        }
        self.set_site_fault(crate::judge::site_fault(site));
    }

    fn set_site_fault(&self, fault: Fault) {
        for domain in Fault::SITE {
            self.site_fault
                .get_or_create(&DomainLabels {
                    domain: domain.as_metrics_label(),
                })
                .set(i64::from(domain == fault));
        }
    }
}
