//! The faults a [`TestBed`] can inject, each with its inverse, and the daemon logs
//! for assertion messages.

use super::*;

impl TestBed {
    /// Takes the site host's only interface down: its connected and default
    /// routes vanish, so every connect off the host fails at once with
    /// ENETUNREACH and the agent finds no default gateway. The site resolver,
    /// being on this host, stays reachable (its forwards fail).
    pub fn site_link_down(&self) {
        ip(&["-n", &self.site_ns, "link", "set", "eth0", "down"]);
    }

    /// Undoes [`site_link_down`](Self::site_link_down), restoring the default
    /// route the kernel dropped with the link.
    pub fn site_link_up(&self) {
        ip(&["-n", &self.site_ns, "link", "set", "eth0", "up"]);
        let gw = self.gateway.to_string();
        ip(&[
            "-n",
            &self.site_ns,
            "route",
            "replace",
            "default",
            "via",
            &gw,
            "dev",
            "eth0",
        ]);
    }

    /// Kills the site resolver. Its address stays, so a query to it draws an
    /// ICMP port-unreachable: a connected UDP socket sees ECONNREFUSED at once,
    /// an unconnected one (as resolver libraries use) times out; TCP is refused.
    pub fn stop_site_resolver(&mut self) {
        self.site_dns = None;
    }

    /// Starts the site resolver again, in its last mode (forwarding or stale MX).
    pub fn start_site_resolver(&mut self) {
        self.site_dns = None; // a running one must free the port first
        let upstream = format!("server=/{DOMAIN}/{}", self.authoritative.ip());
        let mut builder = Dnsmasq::builder().arg(&upstream);
        if let SiteDns::StaleMx(old_mx) = &self.site_dns_mode {
            // Not DnsmasqBuilder::mx: that adds `local=/example.test/`, which would
            // stop the forwarding of every other name in the zone.
            builder = builder.arg(&format!("mx-host={DOMAIN},{old_mx},10"));
        }
        let dns = builder
            .listen(self.site_resolver)
            .in_netns(&self.site_ns)
            .start()
            .expect("site dnsmasq");
        self.site_dns = Some(dns);
    }

    /// Restarts the site resolver so that it answers `example.test MX` with
    /// `10 old_mx` from its own (stale, internal) data, while other names are
    /// still forwarded: the site's answer then differs from the reference's.
    pub fn site_resolver_serves_stale_mx(&mut self, old_mx: &str) {
        self.site_dns_mode = SiteDns::StaleMx(old_mx.to_string());
        self.start_site_resolver();
    }

    /// Restarts the site resolver as a plain forwarder again.
    pub fn site_resolver_forwards(&mut self) {
        self.site_dns_mode = SiteDns::Forwarding;
        self.start_site_resolver();
    }

    /// The router silently drops everything it would forward from or to the
    /// site LAN; it still answers the site itself (ping, TCP RST). Canaries,
    /// the reference resolver and the provider all time out; the site resolver
    /// answers only what it needs no forward for.
    pub fn drop_uplink(&self) {
        let lan = self.lan_cidr();
        let rules = format!("ip saddr {lan} drop\n    ip daddr {lan} drop");
        nft_in(&self.router_ns, &table("uplink", "forward", &rules));
    }

    /// Undoes [`drop_uplink`](Self::drop_uplink).
    pub fn restore_uplink(&self) {
        nft_in(&self.router_ns, &no_table("uplink"));
    }

    /// The provider's mail host (`.25`, every port, ICMP too) silently drops
    /// every packet from outside its own subnet: connects time out, the canary
    /// and DNS (the authoritative server is another address) are unaffected.
    pub fn provider_drops_packets(&self) {
        let rules = format!(
            "ip daddr {} ip saddr != {} drop",
            self.provider_ip,
            self.prov_cidr()
        );
        nft_in(&self.prov_ns, &table("provider", "input", &rules));
    }

    /// Undoes [`provider_drops_packets`](Self::provider_drops_packets).
    pub fn provider_accepts(&self) {
        nft_in(&self.prov_ns, &no_table("provider"));
    }

    /// The domain's authoritative DNS server silently drops every query from
    /// outside its subnet: both resolvers fail to resolve `example.test` names
    /// (the "remote DNS" fault) while the mail host itself stays reachable.
    /// Trap: unbound then answers nothing (no SERVFAIL) for 30 s and more.
    pub fn authoritative_drops_packets(&self) {
        let rules = format!(
            "ip daddr {} ip saddr != {} drop",
            self.authoritative.ip(),
            self.prov_cidr()
        );
        nft_in(&self.prov_ns, &table("authoritative", "input", &rules));
    }

    /// Undoes [`authoritative_drops_packets`](Self::authoritative_drops_packets).
    pub fn authoritative_accepts(&self) {
        nft_in(&self.prov_ns, &no_table("authoritative"));
    }

    /// Kills Dovecot: IMAP and POP3 connects are refused (RST) at once.
    pub fn stop_dovecot(&mut self) {
        self.dovecot = None;
    }

    /// Starts Dovecot again with the certificate in use.
    pub fn start_dovecot(&mut self) {
        self.dovecot = None;
        let (cert, key) = self.cert_files();
        let dovecot = Dovecot::builder()
            .user(self.user, self.password)
            .tls(&cert, &key)
            .plaintext_auth(false)
            .listen(
                self.provider_ip,
                [PORTS.imap, PORTS.imaps, PORTS.pop3, PORTS.pop3s],
            )
            .in_netns(&self.prov_ns)
            .start()
            .expect("dovecot");
        self.dovecot = Some(dovecot);
    }

    /// Restarts Dovecot, Exim and nginx with an expired certificate for
    /// `mail.example.test` from the same CA (not_after two days ago).
    pub fn use_expired_certificate(&mut self) {
        self.cert_in_use = Validity::Expired;
        self.start_mail_services();
    }

    /// Restarts Dovecot, Exim and nginx with the valid certificate again.
    pub fn use_valid_certificate(&mut self) {
        self.cert_in_use = Validity::Current;
        self.start_mail_services();
    }

    /// Dovecot's log, for assertion messages ("" while it is stopped).
    pub fn dovecot_log(&self) -> String {
        self.dovecot.as_ref().map(Dovecot::log).unwrap_or_default()
    }

    /// The site resolver's log (queries included; "" while it is stopped).
    pub fn site_resolver_log(&self) -> String {
        self.site_dns.as_ref().map(Dnsmasq::log).unwrap_or_default()
    }

    /// The logs of the reference resolver, the authoritative DNS server and
    /// Exim, for assertion messages.
    pub fn other_logs(&self) -> String {
        format!(
            "--- unbound ---\n{}\n--- authoritative ---\n{}\n--- exim ---\n{}\n--- canary ---\n{}",
            self.reference_dns.log(),
            self.authoritative_dns.log(),
            self.exim.as_ref().map(Exim::log).unwrap_or_default(),
            self.canary_web.log(),
        )
    }
}
