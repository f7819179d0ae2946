//! `site:` — the gateway, the site and reference resolvers, the canaries.

use super::{DNS_PORT, parse_host_port, parse_socket_addr};
use crate::config::error::ErrorSite;
use crate::config::raw::{RawSite, ResolverList};
use crate::config::{ConfigError, Gateway, Site, SiteResolvers};

pub(super) fn validate_site(errors: &ErrorSite<'_>, raw: &RawSite) -> Result<Site, ConfigError> {
    let gateway = match &raw.gateway {
        None => Gateway::Auto,
        Some(g) if g.value == "auto" => Gateway::Auto,
        Some(g) if g.value == "none" => Gateway::None,
        Some(g) => Gateway::Address(g.value.parse().map_err(|_| {
            errors.at(
                g.referenced,
                "site.gateway",
                format!("`{}` is not `auto`, `none` or an IP address", g.value),
            )
        })?),
    };
    let resolvers = match &raw.resolvers {
        None => SiteResolvers::System,
        Some(list) => match &list.value {
            ResolverList::System => SiteResolvers::System,
            ResolverList::Addresses(addresses) if addresses.is_empty() => {
                return Err(errors.at(
                    list.referenced,
                    "site.resolvers",
                    "the list is empty: write `system` or at least one address",
                ));
            }
            ResolverList::Addresses(addresses) => {
                let mut parsed = Vec::with_capacity(addresses.len());
                for (index, address) in addresses.iter().enumerate() {
                    parsed.push(parse_socket_addr(address, Some(DNS_PORT)).ok_or_else(|| {
                        errors.at(
                            list.referenced,
                            format!("site.resolvers[{index}]"),
                            format!("`{address}` is not an IP address or address:port"),
                        )
                    })?);
                }
                SiteResolvers::List(parsed)
            }
        },
    };
    let mut reference_resolvers = Vec::new();
    for (index, address) in raw.reference_resolvers.iter().flatten().enumerate() {
        reference_resolvers.push(
            parse_socket_addr(&address.value, Some(DNS_PORT)).ok_or_else(|| {
                errors.at(
                    address.referenced,
                    format!("site.reference_resolvers[{index}]"),
                    format!("`{}` is not an IP address or address:port", address.value),
                )
            })?,
        );
    }
    let mut canaries = Vec::new();
    for (index, canary) in raw.canaries.iter().flatten().enumerate() {
        canaries.push(parse_host_port(&canary.value).ok_or_else(|| {
            errors.at(
                canary.referenced,
                format!("site.canaries[{index}]"),
                format!("`{}` is not host:port", canary.value),
            )
        })?);
    }
    Ok(Site {
        gateway,
        resolvers,
        reference_resolvers,
        canaries,
    })
}
