//! The OAuth2 test bed: a test CA, the identity provider stand-in ([`idp`]), a real
//! Dovecot validating tokens with its `oauth2` passdb against the stand-in, client
//! secret files, and the target lines that log in with them. Also an in-process SMTP
//! server taking XOAUTH2: Debian's exim4-daemon-light has no `dovecot` authenticator
//! (and the heavy package's would hand XOAUTH2 to Dovecot only through its own SASL
//! socket), so SMTP is checked against this fake, which asks the stand-in about each
//! token exactly as Dovecot does.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;

use super::Dovecot;
use super::agent::{NO_RESOLVER, config_with};
use super::certs::{TestPki, Validity, acceptor};
use super::dovecot::DovecotBuilder;
use super::fake::FakeServer;
use super::idp::{CLIENT_ID, IdentityProvider, TokenChecker};

/// The mailbox every login is for.
pub const USER: &str = "probe@example.test";
/// Its password (the passwd-file still needs one; OAuth2 logins never use it).
pub const PASSWORD: &str = "Pa55-Never-Used-By-OAuth2";
/// The client secret the stand-in accepts: distinctive, with the `~` and `.` that
/// Entra ID secrets have (so its form-encoded form differs from the secret).
pub const CLIENT_SECRET: &str = "Qx7~Cl1ent.Secret-4f1e2d9a";
/// A client secret the stand-in refuses.
pub const WRONG_SECRET: &str = "Hm3~Wr0ng.Secret-9a0b1c7e";
/// The scope asked for, as Microsoft's.
pub const SCOPE: &str = "https://outlook.office365.com/.default";
/// The name the mail server's certificate is for.
pub const SERVER_NAME: &str = "mail.example.test";
/// Limit on a whole OAuth2 test.
pub const TEST_LIMIT: Duration = Duration::from_secs(120);

/// A CA, the stand-in, Dovecot and the secret files.
pub struct OAuthBed {
    /// Holds the PKI and the secret files.
    pub dir: tempfile::TempDir,
    /// The test CA every target trusts (mail server and identity provider).
    pub pki: TestPki,
    /// The identity provider stand-in.
    pub idp: IdentityProvider,
    /// Dovecot with its `oauth2` passdb.
    pub dovecot: Dovecot,
    /// A file holding [`CLIENT_SECRET`].
    pub secret_file: PathBuf,
    /// A file holding [`WRONG_SECRET`].
    pub wrong_secret_file: PathBuf,
    cert: (PathBuf, PathBuf),
}

impl OAuthBed {
    /// The bed with tokens that live `lifetime`.
    pub async fn start(lifetime: Duration) -> OAuthBed {
        Self::start_with(lifetime, |dovecot| dovecot).await
    }

    /// The bed, with Dovecot further described by `more`.
    pub async fn start_with(
        lifetime: Duration,
        more: impl FnOnce(DovecotBuilder) -> DovecotBuilder,
    ) -> OAuthBed {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = TestPki::new(dir.path().join("pki"));
        let cert = pki.issue(SERVER_NAME, &[SERVER_NAME, "127.0.0.1"], Validity::Current);
        let idp = IdentityProvider::start(&pki, USER, lifetime).await;
        idp.accept_secret(CLIENT_SECRET);
        let builder = Dovecot::builder()
            .user(USER, PASSWORD)
            .tls(&cert.0, &cert.1)
            .oauth2(&idp.introspection_url(), &pki.ca_pem);
        let dovecot =
            tokio::task::block_in_place(|| more(builder).start().expect("dovecot starts"));
        OAuthBed {
            secret_file: secret_file(dir.path(), "client.secret", CLIENT_SECRET),
            wrong_secret_file: secret_file(dir.path(), "wrong.secret", WRONG_SECRET),
            dir,
            pki,
            idp,
            dovecot,
            cert,
        }
    }

    /// `client_secret_file: "…"` for the good secret.
    pub fn good(&self) -> String {
        format!("client_secret_file: \"{}\"", self.secret_file.display())
    }

    /// `client_secret_file: "…"` for the wrong secret.
    pub fn wrong(&self) -> String {
        format!(
            "client_secret_file: \"{}\"",
            self.wrong_secret_file.display()
        )
    }

    /// A target `name` of `protocol` at `addr` with `tls`, logging in as [`USER`]
    /// with the stand-in's token endpoint, its client, [`SCOPE`] and `credential`
    /// (e.g. [`good`](Self::good)) plus further `oauth2` keys `more`.
    pub fn target(
        &self,
        name: &str,
        protocol: &str,
        addr: SocketAddr,
        tls: &str,
        credential: &str,
        more: &str,
    ) -> String {
        self.target_via(
            name,
            protocol,
            addr,
            tls,
            self.idp.token_url(),
            credential,
            more,
        )
    }

    /// [`target`](Self::target): IMAP over implicit TLS to the bed's Dovecot.
    pub fn imaps(&self, name: &str, credential: &str) -> String {
        self.target(name, "imap", self.dovecot.imaps, "implicit", credential, "")
    }

    /// [`target`](Self::target) asking the token endpoint at `token_url`.
    #[allow(clippy::too_many_arguments)]
    pub fn target_via(
        &self,
        name: &str,
        protocol: &str,
        addr: SocketAddr,
        tls: &str,
        token_url: &str,
        credential: &str,
        more: &str,
    ) -> String {
        format!(
            "  - {{name: {name}, protocol: {protocol}, host: 127.0.0.1, port: {}, tls: {tls}, \
             server_name: {SERVER_NAME}, ca_file: \"{}\", auth: {{username: \"{USER}\", \
             oauth2: {{token_url: \"{token_url}\", client_id: {CLIENT_ID}, scope: \"{SCOPE}\", \
             {credential}{more}}}}}}}\n",
            addr.port(),
            self.pki.ca_pem.display()
        )
    }

    /// A configuration probing `targets` every `interval` with `timeout`.
    pub fn config(&self, interval: &str, timeout: &str, targets: &str) -> String {
        config_with(NO_RESOLVER, interval, timeout, targets)
    }

    /// The mail server's certificate and key (for in-process servers).
    pub fn server_cert(&self) -> &(PathBuf, PathBuf) {
        &self.cert
    }
}

/// Writes `secret` (and a newline) to `dir/name`, readable by its owner only.
pub fn secret_file(dir: &std::path::Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("write a secret file");
    let owner_only = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(&path, owner_only).expect("chmod the secret file");
    path
}

/// How the SMTP fake answers a good token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTenant {
    /// SMTP AUTH allowed: a token the stand-in takes gets `235`.
    Allowed,
    /// SMTP AUTH disabled for the tenant: every login gets `535 5.7.139`, as
    /// Exchange Online answers.
    Disabled,
}

/// An SMTP submission server over implicit TLS offering `AUTH LOGIN XOAUTH2`, checking
/// each token with the stand-in; answers as Exchange Online does (`235 2.7.0`,
/// an error challenge then `535 5.7.3`, or `535 5.7.139` when SMTP AUTH is off).
pub async fn smtp_fake(bed: &OAuthBed, tenant: SmtpTenant) -> FakeServer {
    let (cert, key) = bed.server_cert();
    let tls = acceptor(cert, key);
    let checker = bed.idp.checker();
    FakeServer::start(move |stream| {
        let (tls, checker) = (tls.clone(), checker.clone());
        async move {
            let Ok(stream) = tls.accept(stream).await else {
                return;
            };
            smtp_session(stream, &checker, tenant).await;
        }
    })
    .await
}

async fn smtp_session(
    stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    checker: &TokenChecker,
    tenant: SmtpTenant,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let mut stream = BufReader::new(stream);
    async fn send<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
        stream: &mut BufReader<S>,
        text: &str,
    ) {
        let _ = stream.get_mut().write_all(text.as_bytes()).await;
    }
    send(
        &mut stream,
        "220 smtp.example.test Microsoft ESMTP MAIL Service ready\r\n",
    )
    .await;
    let mut line = String::new();
    loop {
        line.clear();
        if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            send(
                &mut stream,
                "250-smtp.example.test Hello\r\n250-SIZE 157286400\r\n250-AUTH LOGIN XOAUTH2\r\n250 ENHANCEDSTATUSCODES\r\n",
            )
            .await;
        } else if upper == "AUTH XOAUTH2" {
            send(&mut stream, "334 \r\n").await;
            line.clear();
            let _ = stream.read_line(&mut line).await;
            let response = base64::engine::general_purpose::STANDARD
                .decode(line.trim_end())
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&response);
            let token = text
                .split('\x01')
                .find_map(|part| part.strip_prefix("auth=Bearer "))
                .unwrap_or_default()
                .to_owned();
            match tenant {
                SmtpTenant::Disabled => {
                    send(
                        &mut stream,
                        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.\r\n",
                    )
                    .await;
                }
                SmtpTenant::Allowed if checker.accepts(&token) => {
                    send(&mut stream, "235 2.7.0 Authentication successful\r\n").await;
                }
                SmtpTenant::Allowed => {
                    let challenge = base64::engine::general_purpose::STANDARD
                        .encode(r#"{"status":"401","schemes":"bearer"}"#);
                    send(&mut stream, &format!("334 {challenge}\r\n")).await;
                    line.clear();
                    let _ = stream.read_line(&mut line).await;
                    send(
                        &mut stream,
                        "535 5.7.3 Authentication unsuccessful [SN4PR0501CA0005.namprd05.prod.outlook.com]\r\n",
                    )
                    .await;
                }
            }
        } else if upper == "QUIT" {
            send(
                &mut stream,
                "221 2.0.0 Service closing transmission channel\r\n",
            )
            .await;
            return;
        } else {
            send(&mut stream, "502 5.5.2 Error: command not recognized\r\n").await;
        }
    }
}
