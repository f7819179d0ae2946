//! The session every mail protocol runs, written once: connect (with implicit TLS),
//! greeting, STARTTLS upgrade, capabilities, login, polite goodbye — each a timed phase.
//!
//! The protocol files (`imap.rs`, `pop3.rs`, `smtp.rs`) only implement [`Dialogue`]:
//! what to send and how to read the answers.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::dial::{self, Connection};
use super::lines::{LineStream, sanitise};
use super::oauth2::{self, sasl, sasl::SaslLogin};
use super::redact::Redactor;
use super::{ErrorKind, Failed, Phase, ProbeError, ProtocolFacts, Recorder};
use crate::config::{Credentials, Endpoint, OAuth2, TlsMode};
use crate::probe::env::ProbeEnv;

/// The longest banner kept for `/debug`: enough to identify the server software.
pub const MAX_BANNER_LEN: usize = 200;
/// Time allowed for the goodbye (LOGOUT / QUIT) after the probe has its answer.
const GOODBYE_GRACE: Duration = Duration::from_secs(1);
/// The goodbye must end this long before the probe's deadline, so that a server slow
/// to say goodbye never turns a healthy probe into a timeout.
const GOODBYE_MARGIN: Duration = Duration::from_millis(50);

/// A line-based connection as the dialogues see it.
pub type Lines = LineStream<Connection>;

/// What a server said it can do, normalised to upper case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Keywords (`STARTTLS`, `LOGINDISABLED`, `SIZE`, `PIPELINING`, …).
    pub keywords: BTreeSet<String>,
    /// SASL mechanisms offered (`PLAIN`, `LOGIN`, `XOAUTH2`, …).
    pub auth_mechanisms: BTreeSet<String>,
}

impl Capabilities {
    /// Whether `keyword` was advertised.
    pub fn has(&self, keyword: &str) -> bool {
        self.keywords.contains(keyword)
    }

    /// Whether SASL `mechanism` was advertised.
    pub fn offers_auth(&self, mechanism: &str) -> bool {
        self.auth_mechanisms.contains(mechanism)
    }

    /// The keywords, space-separated, for logs and `/debug`.
    pub fn keywords_text(&self) -> String {
        space_separated(&self.keywords)
    }

    /// The SASL mechanisms, space-separated, for logs and `/debug`.
    pub fn mechanisms_text(&self) -> String {
        space_separated(&self.auth_mechanisms)
    }
}

fn space_separated(items: &BTreeSet<String>) -> String {
    items
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Facts from a mail session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailFacts {
    /// The greeting, sanitised and truncated (for `/debug` only, never a label).
    pub banner: String,
    /// The capabilities the session ended with (after STARTTLS when it was used).
    pub capabilities: Capabilities,
    /// Whether the connection was upgraded with STARTTLS.
    pub upgraded_with_starttls: bool,
}

/// One mail protocol's side of the session. Every method reads whole replies (never
/// pipelining) through the bounded [`LineStream`].
pub trait Dialogue {
    /// Reads the greeting; returns its text.
    fn greeting(
        &mut self,
        lines: &mut Lines,
    ) -> impl Future<Output = Result<String, ProbeError>> + Send;

    /// Asks for and parses the capabilities.
    fn capabilities(
        &mut self,
        lines: &mut Lines,
    ) -> impl Future<Output = Result<Capabilities, ProbeError>> + Send;

    /// Whether these capabilities offer the protocol's STARTTLS.
    fn offers_starttls(&self, capabilities: &Capabilities) -> bool;

    /// Sends STARTTLS and reads the go-ahead.
    fn starttls(
        &mut self,
        lines: &mut Lines,
    ) -> impl Future<Output = Result<(), ProbeError>> + Send;

    /// Logs in. A rejection is `auth_failed`; nothing is retried.
    fn login(
        &mut self,
        lines: &mut Lines,
        capabilities: &Capabilities,
        credentials: &Credentials,
    ) -> impl Future<Output = Result<(), ProbeError>> + Send;

    /// Logs in with an OAuth2 token (XOAUTH2 or OAUTHBEARER): the initial response,
    /// and — should the server answer with an error challenge — the answer the
    /// mechanism requires before the final refusal. A refusal is `auth_failed`, with
    /// the decoded challenge in its message.
    fn login_sasl(
        &mut self,
        lines: &mut Lines,
        capabilities: &Capabilities,
        login: &SaslLogin,
    ) -> impl Future<Output = Result<(), ProbeError>> + Send {
        let _ = (lines, capabilities, login);
        async {
            Err(ProbeError::new(
                ErrorKind::ProtocolError,
                "this protocol has no OAuth2 login",
            ))
        }
    }

    /// Says goodbye (LOGOUT / QUIT) and reads the answer; errors do not matter.
    fn goodbye(&mut self, lines: &mut Lines) -> impl Future<Output = ()> + Send;
}

/// Runs a whole session of `dialogue` against `endpoint`.
///
/// # Errors
///
/// [`Failed`] when a phase failed; the recorder holds the details.
pub async fn session<D: Dialogue + Send>(
    dialogue: D,
    endpoint: &Endpoint,
    deadline: Instant,
    env: &ProbeEnv,
    recorder: &mut Recorder,
) -> Result<(), Failed> {
    let session = open(dialogue, endpoint, deadline, env, recorder).await?;
    session.goodbye(deadline).await;
    Ok(())
}

/// A session past its login (or past its capabilities, for an endpoint without
/// credentials), for a probe that has more to say (a round trip's SMTP transaction
/// or mailbox search) before the goodbye.
#[derive(Debug)]
pub struct Session<D> {
    dialogue: D,
    /// The connection, for the protocol's further commands.
    pub lines: Lines,
    /// What the server offered (after STARTTLS when it was used).
    pub capabilities: Capabilities,
}

impl<D: Dialogue + Send> Session<D> {
    /// Says goodbye (LOGOUT / QUIT), bounded so that it never costs the probe.
    pub async fn goodbye(mut self, deadline: Instant) {
        goodbye(&mut self.dialogue, &mut self.lines, deadline).await;
    }
}

/// Connects, reads the greeting, upgrades with STARTTLS, asks for the capabilities and
/// logs in, each a timed phase; returns the session for more commands. On failure the
/// session has already said goodbye.
///
/// # Errors
///
/// [`Failed`] when a phase failed; the recorder holds the details.
pub async fn open<D: Dialogue + Send>(
    mut dialogue: D,
    endpoint: &Endpoint,
    deadline: Instant,
    env: &ProbeEnv,
    recorder: &mut Recorder,
) -> Result<Session<D>, Failed> {
    let connection = dial::open(endpoint, env, deadline, recorder).await?;
    let mut lines = LineStream::new(connection);
    let mut facts = MailFacts::default();

    let banner = recorder
        .phase(Phase::Greeting, dialogue.greeting(&mut lines))
        .await;
    if let Ok(banner) = &banner {
        facts.banner = sanitise(banner, MAX_BANNER_LEN);
        recorder.note(format!("greeting: {}", facts.banner));
    }
    recorder.facts = ProtocolFacts::Mail(facts.clone());
    banner?;

    if endpoint.tls == TlsMode::Starttls {
        lines = starttls(&mut dialogue, lines, endpoint, env, recorder).await?;
        facts.upgraded_with_starttls = true;
    }
    let outcome = async {
        let capabilities = recorder
            .phase(Phase::Request, dialogue.capabilities(&mut lines))
            .await?;
        facts.capabilities = capabilities.clone();
        if facts.upgraded_with_starttls {
            // Servers stop advertising STARTTLS once it is done; keep the fact.
            facts.capabilities.keywords.insert("STARTTLS".to_owned());
        }
        recorder.note(format!(
            "capabilities: {} (login: {})",
            facts.capabilities.keywords_text(),
            facts.capabilities.mechanisms_text()
        ));
        recorder.facts = ProtocolFacts::Mail(facts.clone());
        if let Some(credentials) = &endpoint.auth {
            // Validation refuses `tls: none` with `auth` unless allowed; this is the
            // second lock on the same door.
            if endpoint.tls == TlsMode::None && !credentials.plaintext_allowed {
                return Err(recorder.fail(
                    Phase::Auth,
                    ProbeError::new(
                        ErrorKind::ProtocolError,
                        "refusing to send the password over a connection without TLS \
                         (set `allow_plaintext_auth: true` to allow it)",
                    ),
                ));
            }
            match &credentials.oauth2 {
                None => {
                    recorder.credential_sent();
                    recorder
                        .phase(
                            Phase::Auth,
                            dialogue.login(&mut lines, &capabilities, credentials),
                        )
                        .await?;
                }
                Some(oauth2) => {
                    let context = TokenLogin {
                        endpoint,
                        env,
                        deadline,
                    };
                    oauth2_login(
                        &mut dialogue,
                        &mut lines,
                        &capabilities,
                        oauth2,
                        context,
                        recorder,
                    )
                    .await?;
                }
            }
        }
        Ok(capabilities)
    }
    .await;
    match outcome {
        Ok(capabilities) => Ok(Session {
            dialogue,
            lines,
            capabilities,
        }),
        Err(failed) => {
            goodbye(&mut dialogue, &mut lines, deadline).await;
            Err(failed)
        }
    }
}

/// A polite goodbye whatever happened, bounded so it never costs the probe.
async fn goodbye<D: Dialogue + Send>(dialogue: &mut D, lines: &mut Lines, deadline: Instant) {
    let goodbye_by = (Instant::now() + GOODBYE_GRACE)
        .min(deadline.checked_sub(GOODBYE_MARGIN).unwrap_or(deadline));
    let _ = tokio::time::timeout_at(goodbye_by, async {
        dialogue.goodbye(lines).await;
        lines.shutdown().await;
    })
    .await;
}

/// What an OAuth2 login needs besides the dialogue.
#[derive(Clone, Copy)]
struct TokenLogin<'a> {
    endpoint: &'a Endpoint,
    env: &'a ProbeEnv,
    deadline: Instant,
}

/// The `token` phase, then the SASL login with the token; a cached token the server
/// refuses is replaced once (it may have been revoked before it expired) unless the
/// login was already rejected before, so a refusal is reported for a token fresh
/// from the identity provider.
async fn oauth2_login<D: Dialogue + Send>(
    dialogue: &mut D,
    lines: &mut Lines,
    capabilities: &Capabilities,
    oauth2: &OAuth2,
    context: TokenLogin<'_>,
    recorder: &mut Recorder,
) -> Result<(), Failed> {
    let TokenLogin {
        endpoint,
        env,
        deadline,
    } = context;
    let username = endpoint
        .auth
        .as_ref()
        .map_or("", |credentials| credentials.username.as_str());
    let mechanism = sasl::choose(oauth2.mechanism, capabilities)
        .map_err(|error| recorder.fail(Phase::Auth, error))?;
    if let Some(login) = &mut recorder.login {
        login.mechanism = Some(mechanism.name());
    }
    let mut obtained = oauth2::obtain(oauth2, endpoint, env, deadline, recorder).await?;
    let mut replaced = false;
    loop {
        let login = SaslLogin::new(
            mechanism,
            username,
            &obtained.token,
            &endpoint.server_name,
            endpoint.port,
            &mut recorder.redactor,
        );
        recorder.note(format!("logging in with {}", mechanism.name()));
        recorder.credential_sent();
        let outcome = recorder
            .phase(
                Phase::Auth,
                dialogue.login_sasl(lines, capabilities, &login),
            )
            .await;
        let refused = recorder
            .failure()
            .is_some_and(|failure| failure.kind == ErrorKind::AuthFailed);
        if outcome.is_ok() || !refused || obtained.fresh || replaced || !recorder.may_retry_login()
        {
            return outcome;
        }
        recorder.note("the server refused the cached token: asking for a new one");
        let _ = recorder.take_failure();
        env.tokens
            .invalidate(oauth2.fingerprint(), &obtained.token)
            .await;
        obtained = oauth2::obtain(oauth2, endpoint, env, deadline, recorder).await?;
        replaced = true;
    }
}

/// STARTTLS: capabilities in plain text, the command, then the TLS handshake. What the
/// server said before TLS is discarded: the caller asks for capabilities again.
async fn starttls<D: Dialogue + Send>(
    dialogue: &mut D,
    mut lines: Lines,
    endpoint: &Endpoint,
    env: &ProbeEnv,
    recorder: &mut Recorder,
) -> Result<Lines, Failed> {
    recorder
        .phase(Phase::Starttls, async {
            let plain = dialogue.capabilities(&mut lines).await?;
            if !dialogue.offers_starttls(&plain) {
                return Err(ProbeError::new(
                    ErrorKind::StarttlsUnavailable,
                    "the server does not offer STARTTLS, so credentials and mail would cross the network in clear text",
                ));
            }
            dialogue.starttls(&mut lines).await
        })
        .await?;
    let (connection, read_so_far) = lines
        .into_upgradable()
        .map_err(|error| recorder.fail(Phase::Starttls, error))?;
    let Connection::Plain(tcp) = connection else {
        // `open` returns a plain connection for `tls: starttls`; an already encrypted
        // one here would be a bug, reported rather than panicking.
        return Err(recorder.fail(
            Phase::Starttls,
            ProbeError::new(
                ErrorKind::ProtocolError,
                "internal error: STARTTLS on a TLS connection",
            ),
        ));
    };
    let verifier = env.verifier(&endpoint.extra_roots);
    let tls = dial::upgrade(tcp, &endpoint.server_name, verifier, recorder, Phase::Tls).await?;
    Ok(LineStream::continuing(
        Connection::Tls(Box::new(tls)),
        read_so_far,
    ))
}

/// Removes every form of the password from server text before it is shortened into a
/// message: some servers echo commands. (The recorder removes them again from
/// everything it keeps; this is for text cut to length first.)
pub fn redact(text: &str, credentials: &Credentials) -> String {
    Redactor::for_credentials(credentials)
        .clean(text)
        .into_owned()
}

/// The SASL PLAIN initial response: base64 of `\0user\0password` (RFC 4616).
pub fn plain_sasl(credentials: &Credentials) -> String {
    let mut message = Vec::new();
    message.push(0);
    message.extend_from_slice(credentials.username.as_bytes());
    message.push(0);
    message.extend_from_slice(credentials.password.expose().as_bytes());
    base64_encode(&message)
}

/// Standard base64 with padding, as SASL uses.
pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    #[test]
    fn plain_sasl_follows_rfc_4616() {
        let credentials = Credentials {
            username: "tim".into(),
            password: Secret::new("tanstaaftanstaaf".into()),
            plaintext_allowed: false,
            oauth2: None,
            max_failures: 3,
        };
        assert_eq!(plain_sasl(&credentials), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
    }

    #[test]
    fn echoed_passwords_are_redacted_in_every_form() {
        let credentials = Credentials {
            username: "tim".into(),
            password: Secret::new("hunter2".into()),
            plaintext_allowed: false,
            oauth2: None,
            max_failures: 3,
        };
        let echoed = format!(
            "NO bad hunter2 {} {}",
            plain_sasl(&credentials),
            base64_encode(b"hunter2")
        );
        let clean = redact(&echoed, &credentials);
        assert_eq!(clean, "NO bad <redacted> <redacted> <redacted>");
    }
}
