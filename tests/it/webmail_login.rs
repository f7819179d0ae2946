//! Webmail Basic login against a real nginx (`auth_basic`): accepted, rejected,
//! missing, and the credentials' path — same-origin redirects carry them, other
//! origins and plain HTTP never see them, and no output ever shows the password.

use std::net::{Ipv4Addr, SocketAddr};

use crate::support::agent::{Metrics, within};
use crate::support::binary::{assert_never_shown, basic_forms, traced_run};
use crate::support::exchange::{
    OTHER_HOST, PROBE_TIMEOUT, TEST_LIMIT, WEBMAIL_HOST, assert_failed, assert_up, config,
};
use crate::support::web::{USER, W, Web, expect_body};
use crate::support::{Nginx, free_port};

/// Distinctive, so a search for it in any output cannot match by accident.
const PASSWORD: &str = "Webm4il-Lantern-9c2e71";
const WRONG_PASSWORD: &str = "Wr0ng-Ladder-3b8f05";

/// Basic login (`auth_basic`) on every location, `/` answering a redirect to
/// `location`. The redirect is sent from a named location reached by
/// `try_files`: a plain `return` runs in nginx's rewrite phase, before the access
/// phase that checks the login, and would answer without one.
fn login_then_redirect(htpasswd: &std::path::Path, location: &str) -> String {
    format!(
        "auth_basic \"webmail\";\n\
         auth_basic_user_file {};\n\
         location = / {{ try_files /no-such-file @redirect; }}\n\
         location @redirect {{ return 302 {location}; }}",
        htpasswd.display()
    )
}

/// [`login_then_redirect`] to `/inbox/` on the same origin, which serves the page.
fn login_required(htpasswd: &std::path::Path) -> String {
    login_then_redirect(htpasswd, "/inbox/")
        + "\nlocation = /inbox/ { try_files /index.html =404; }"
}

fn auth(password_file: &std::path::Path) -> String {
    format!(
        "auth: {{username: \"{USER}\", password_file: \"{}\"}}",
        password_file.display()
    )
}

/// The logon page behind a login with [`PASSWORD`] ([`login_required`]).
fn login_site() -> (Web, Nginx) {
    let web = Web::with_page();
    let nginx = web.nginx(&login_required(&web.htpasswd(PASSWORD)));
    (web, nginx)
}

/// A login with [`PASSWORD`] whose `/` redirects to `/landing` on a second
/// server of the same nginx, at the URL `landing(port)` (with TLS when `tls`),
/// which fails the probe (403) if an Authorization header reaches it. Returns
/// the scrape of one probe of `webmail` logging in with the right password, with
/// `extra` target keys.
async fn login_redirected_to(
    landing: impl FnOnce(u16) -> String,
    tls: bool,
    extra: &str,
) -> Metrics {
    let web = Web::with_page();
    let server = SocketAddr::new(
        Ipv4Addr::LOCALHOST.into(),
        free_port(Ipv4Addr::LOCALHOST.into()),
    );
    let nginx = web
        .nginx_builder(&login_then_redirect(
            &web.htpasswd(PASSWORD),
            &landing(server.port()),
        ))
        .server(
            server,
            tls,
            &format!(
                "root {};\n\
                 location = /landing {{\n\
                 \x20 if ($http_authorization) {{ return 403; }}\n\
                 \x20 try_files /index.html =404;\n\
                 }}",
                web.www().display()
            ),
        )
        .start()
        .expect("nginx starts");
    let good = web.password_file(PASSWORD);
    let keys = format!("expect_status: [200], {}{extra}", auth(&good));
    web.probe_webmail(&nginx, "/", &keys).await
}

#[tokio::test]
async fn a_login_with_the_right_password_is_up() {
    within(TEST_LIMIT, async {
        let (web, nginx) = login_site();
        let good = web.password_file(PASSWORD);
        let keys = format!("{}, {}", expect_body(), auth(&good));
        let m = web.probe_webmail(&nginx, "/", &keys).await;
        // Credentials went with the first request and with the redirect to the
        // same origin: both needed them.
        assert_up(&m, &W);
        assert_eq!(m.value("mailprobe_http_redirects", &W), 1.0);
        assert_eq!(m.value("mailprobe_http_status_code", &W), 200.0);
    })
    .await;
}

#[tokio::test]
async fn credentials_never_go_to_a_redirect_target_on_another_origin() {
    within(TEST_LIMIT, async {
        // The other origin: same address, another port, another name.
        let landing = |port| format!("https://{OTHER_HOST}:{port}/landing");
        let m = login_redirected_to(landing, true, "").await;
        assert_up(&m, &W);
        assert_eq!(m.value("mailprobe_http_redirects", &W), 1.0);
        assert_eq!(m.value("mailprobe_http_status_code", &W), 200.0);
    })
    .await;
}

#[tokio::test]
async fn credentials_never_go_over_plain_http() {
    within(TEST_LIMIT, async {
        // The same host on a plain-HTTP port. The downgrade is refused unless allowed
        // (issue 16); allowed, it is followed without the credentials.
        let landing = |port| format!("http://{WEBMAIL_HOST}:{port}/landing");
        let allowed = format!(", allow_redirects: [\"{WEBMAIL_HOST}\"]");
        let m = login_redirected_to(landing, false, &allowed).await;
        assert_up(&m, &W);
        assert_eq!(m.value("mailprobe_http_redirects", &W), 1.0);
    })
    .await;
}

/// Issue 16: a redirect from HTTPS down to plain HTTP is not followed unless the
/// target allows it.
#[tokio::test]
async fn issue_16_a_redirect_down_to_plain_http_fails_with_redirect_refused() {
    within(TEST_LIMIT, async {
        let landing = |port| format!("http://{WEBMAIL_HOST}:{port}/landing");
        let m = login_redirected_to(landing, false, "").await;
        assert_failed(&m, &W, "request", "redirect_refused", "server_service");
        assert_eq!(m.value("mailprobe_http_redirects", &W), 1.0);
    })
    .await;
}

#[tokio::test]
async fn a_401_without_configured_credentials_fails_in_request_with_http_status() {
    within(TEST_LIMIT, async {
        let (web, nginx) = login_site();
        let m = web.probe_webmail(&nginx, "/", "").await;
        // No credentials were sent, so none were rejected: a status, not a login.
        assert_failed(&m, &W, "request", "http_status", "server_service");
        assert_eq!(m.value("mailprobe_http_status_code", &W), 401.0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_login_fails_in_auth_with_auth_failed_and_the_password_never_shows() {
    within(TEST_LIMIT, async {
        let (web, nginx) = login_site();
        let good = web.password_file(PASSWORD);
        let wrong = web.password_file(WRONG_PASSWORD);
        let targets = [
            web.target("webmail", &nginx, "/", &auth(&wrong)),
            web.target("webmail-good", &nginx, "/", &auth(&good)),
        ];
        let config_path = web.dir.path().join("mailprobe.yaml");
        std::fs::write(
            &config_path,
            config(web.dns.addr, PROBE_TIMEOUT, &targets.concat()),
        )
        .unwrap();

        let names = ["webmail", "webmail-good"];
        let shown = traced_run(&config_path, &names, &names).await;
        let m = &shown.metrics;
        assert_failed(m, &W, "auth", "auth_failed", "server_auth");
        assert_eq!(m.value("mailprobe_http_status_code", &W), 401.0);
        let good_series = [("target", "webmail-good"), ("protocol", "https")];
        assert_up(m, &good_series);

        // /metrics, then the /debug page of each target, then the log.
        let debug = &shown.outputs[1..=names.len()];
        for (name, (_, body)) in names.iter().zip(debug) {
            assert!(body.contains("401") || *name == "webmail-good", "{body}");
        }
        assert!(
            shown.outputs.last().unwrap().1.len() > 10_000,
            "trace logging produced output to search"
        );
        for password in [PASSWORD, WRONG_PASSWORD] {
            assert_never_shown(&shown.outputs, &basic_forms(USER, password));
        }
        drop(nginx);
    })
    .await;
}
