//! Webmail Basic login against a real nginx (`auth_basic`): accepted, rejected,
//! missing, and the credentials' path — same-origin redirects carry them, other
//! origins and plain HTTP never see them, and no output ever shows the password.

use std::net::{Ipv4Addr, SocketAddr};

use crate::support::agent::{Metrics, http, within};
use crate::support::binary::Binary;
use crate::support::exchange::{
    OTHER_HOST, PROBE_TIMEOUT, TEST_LIMIT, WEBMAIL_HOST, assert_failed, assert_up, config, probed,
};
use crate::support::free_port;
use crate::support::web::{EXPECT_BODY, PAGE, USER, W, Web};

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

#[tokio::test]
async fn a_login_with_the_right_password_is_up() {
    within(TEST_LIMIT, async {
        let web = Web::new();
        web.file("index.html", PAGE.as_bytes());
        let nginx = web.nginx(&login_required(&web.htpasswd(PASSWORD)));
        let good = web.password_file(PASSWORD);
        let agent = web
            .agent(
                PROBE_TIMEOUT,
                &[web.target(
                    "webmail",
                    &nginx,
                    "/",
                    &format!("expect_body: \"{EXPECT_BODY}\", {}", auth(&good)),
                )],
            )
            .await;
        let m = probed(&agent, &[&W], 1.0).await;
        // Credentials went with the first request and with the redirect to the
        // same origin: both needed them.
        assert_up(&m, &W);
        assert_eq!(m.value("mailprobe_http_redirects", &W), 1.0);
        assert_eq!(m.value("mailprobe_http_status_code", &W), 200.0);
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn credentials_never_go_to_a_redirect_target_on_another_origin() {
    within(TEST_LIMIT, async {
        let web = Web::new();
        web.file("index.html", PAGE.as_bytes());
        // The other origin: same address, another port, another name. It fails the
        // probe (403) if an Authorization header reaches it.
        let other = SocketAddr::new(
            Ipv4Addr::LOCALHOST.into(),
            free_port(Ipv4Addr::LOCALHOST.into()),
        );
        let nginx = web
            .nginx_builder(&login_then_redirect(
                &web.htpasswd(PASSWORD),
                &format!("https://{OTHER_HOST}:{}/landing", other.port()),
            ))
            .server(
                other,
                true,
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
        let agent = web
            .agent(
                PROBE_TIMEOUT,
                &[web.target(
                    "webmail",
                    &nginx,
                    "/",
                    // The downgrade to plain HTTP is refused unless allowed (issue 16);
                    // allowed, it is followed without the credentials.
                    &format!(
                        "expect_status: [200], allow_redirects: [\"{WEBMAIL_HOST}\"], {}",
                        auth(&good)
                    ),
                )],
            )
            .await;
        let m = probed(&agent, &[&W], 1.0).await;
        assert_up(&m, &W);
        assert_eq!(m.value("mailprobe_http_redirects", &W), 1.0);
        assert_eq!(m.value("mailprobe_http_status_code", &W), 200.0);
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn credentials_never_go_over_plain_http() {
    within(TEST_LIMIT, async {
        let web = Web::new();
        web.file("index.html", PAGE.as_bytes());
        // The same host on a plain-HTTP port: 403 if an Authorization header arrives.
        let plain = SocketAddr::new(
            Ipv4Addr::LOCALHOST.into(),
            free_port(Ipv4Addr::LOCALHOST.into()),
        );
        let nginx = web
            .nginx_builder(&login_then_redirect(
                &web.htpasswd(PASSWORD),
                &format!("http://{WEBMAIL_HOST}:{}/landing", plain.port()),
            ))
            .server(
                plain,
                false,
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
        let agent = web
            .agent(
                PROBE_TIMEOUT,
                &[web.target(
                    "webmail",
                    &nginx,
                    "/",
                    // The downgrade to plain HTTP is refused unless allowed (issue 16);
                    // allowed, it is followed without the credentials.
                    &format!(
                        "expect_status: [200], allow_redirects: [\"{WEBMAIL_HOST}\"], {}",
                        auth(&good)
                    ),
                )],
            )
            .await;
        let m = probed(&agent, &[&W], 1.0).await;
        assert_up(&m, &W);
        assert_eq!(m.value("mailprobe_http_redirects", &W), 1.0);
        agent.stop().await.expect("clean stop");
    })
    .await;
}

#[tokio::test]
async fn a_401_without_configured_credentials_fails_in_request_with_http_status() {
    within(TEST_LIMIT, async {
        let web = Web::new();
        web.file("index.html", PAGE.as_bytes());
        let nginx = web.nginx(&login_required(&web.htpasswd(PASSWORD)));
        let agent = web
            .agent(PROBE_TIMEOUT, &[web.target("webmail", &nginx, "/", "")])
            .await;
        let m = probed(&agent, &[&W], 1.0).await;
        // No credentials were sent, so none were rejected: a status, not a login.
        assert_failed(&m, &W, "request", "http_status", "server_service");
        assert_eq!(m.value("mailprobe_http_status_code", &W), 401.0);
        agent.stop().await.expect("clean stop");
    })
    .await;
}

/// The forms a Basic password could leak in: itself and the header value.
fn secret_forms(password: &str) -> Vec<String> {
    use base64::Engine as _;
    vec![
        password.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_login_fails_in_auth_with_auth_failed_and_the_password_never_shows() {
    within(TEST_LIMIT, async {
        let web = Web::new();
        web.file("index.html", PAGE.as_bytes());
        let nginx = web.nginx(&login_required(&web.htpasswd(PASSWORD)));
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

        // Everything the agent logs, at the most verbose level, libraries included.
        let (mut binary, addr) =
            tokio::task::block_in_place(|| Binary::start_with(&config_path, "trace"));
        for name in ["webmail", "webmail-good"] {
            let needle = format!("\"target\":\"{name}\"");
            let is_result = |line: &str| {
                line.contains(&needle)
                    && (line.contains("probe succeeded") || line.contains("probe failed"))
            };
            let seen = binary.log.iter().any(|line| is_result(line));
            if !seen {
                tokio::task::block_in_place(|| while !is_result(&binary.wait_line(&needle)) {});
            }
        }
        let (status, text) = http(addr, "GET", "/metrics", &[]).await;
        assert_eq!(status, 200);
        let m = Metrics::parse(&text);
        assert_failed(&m, &W, "auth", "auth_failed", "server_auth");
        assert_eq!(m.value("mailprobe_http_status_code", &W), 401.0);
        let good_series = [("target", "webmail-good"), ("protocol", "https")];
        assert_up(&m, &good_series);

        let mut outputs = vec![("/metrics".to_owned(), text)];
        for name in ["webmail", "webmail-good"] {
            let (status, body) = http(addr, "GET", &format!("/debug?target={name}"), &[]).await;
            assert_eq!(status, 200, "{body}");
            assert!(body.contains("401") || name == "webmail-good", "{body}");
            outputs.push((format!("/debug?target={name}"), body));
        }
        binary.signal(libc::SIGTERM);
        let status = tokio::task::block_in_place(|| binary.wait_exit());
        assert_eq!(status.code(), Some(0));
        outputs.push(("the log".to_owned(), binary.log.join("\n")));
        assert!(
            outputs.last().unwrap().1.len() > 10_000,
            "trace logging produced output to search"
        );
        for password in [PASSWORD, WRONG_PASSWORD] {
            for form in secret_forms(password) {
                for (place, text) in &outputs {
                    assert!(!text.contains(&form), "a password form appears in {place}");
                }
            }
        }
        drop(nginx);
    })
    .await;
}
