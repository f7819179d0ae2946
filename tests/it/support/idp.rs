//! An identity provider stand-in, in process, over real TLS: a token endpoint (the
//! client-credentials grant with a client secret or a signed client assertion, and the
//! JWT-bearer grant of a service account) and the introspection endpoint Dovecot's
//! `oauth2` passdb asks. No identity provider is packaged in Debian for loopback use,
//! and this one can also fail on demand (refuse the client, revoke its tokens, refuse
//! them at the mailbox). It counts every request, and verifies every assertion's
//! signature with the public key of the certificate the test registered.
//!
//! Its answers copy Microsoft Entra ID's: `invalid_client` with `AADSTS7000215` for a
//! wrong secret, `AADSTS700027` for an assertion that does not verify.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::certs::{TestPki, Validity, acceptor};

/// The tenant path of the token URL, as Microsoft's.
pub const TOKEN_PATH: &str = "/contoso.test/oauth2/v2.0/token";
/// The introspection path Dovecot is pointed at.
pub const INTROSPECTION_PATH: &str = "/introspect";
/// Where nginx's `auth_request` asks whether a request's bearer token is good.
pub const BEARER_CHECK_PATH: &str = "/bearer-check";
/// The application (client) id the stand-in knows.
pub const CLIENT_ID: &str = "6f1b2c3d-0000-4000-8000-mailprobe0001";
/// The roles every token carries (Microsoft's app roles).
pub const ROLES: [&str; 3] = ["IMAP.AccessAsApp", "POP.AccessAsApp", "SMTP.SendAsApp"];

/// A public key the stand-in verifies assertions with: the certificate's SHA-1
/// thumbprint (the `x5t` it expects) and its RSA public key.
#[derive(Clone)]
struct Registered {
    thumbprint: Vec<u8>,
    public_key: Vec<u8>,
}

#[derive(Default)]
struct State {
    token_url: String,
    username: String,
    secret: Mutex<Option<String>>,
    certificate: Mutex<Option<Registered>>,
    service_account: Mutex<Option<(String, Registered)>>,
    lifetime_secs: AtomicU64,
    token_requests: AtomicUsize,
    introspections: AtomicUsize,
    refused_at_mailbox: AtomicBool,
    /// Tokens issued, with when they stop being valid; revoked ones are removed.
    issued: Mutex<HashMap<String, Instant>>,
    /// Every token ever issued (for the never-shown checks).
    all_issued: Mutex<Vec<String>>,
    /// Every secret a request carried: client secrets, assertions, tokens (for the
    /// never-shown checks).
    carried: Mutex<Vec<String>>,
    /// The `X-AnchorMailbox` of each bearer check.
    anchors: Mutex<Vec<String>>,
    serial: AtomicUsize,
}

/// A running stand-in; stops when dropped.
pub struct IdentityProvider {
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl IdentityProvider {
    /// Starts it with a certificate for 127.0.0.1 from `pki`, issuing tokens for the
    /// mailbox `username` that live `lifetime`.
    pub async fn start(pki: &TestPki, username: &str, lifetime: Duration) -> IdentityProvider {
        let (cert, key) = pki.issue("127.0.0.1", &["127.0.0.1"], Validity::Current);
        let acceptor = acceptor(&cert, &key);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the IdP");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(State {
            token_url: format!("https://127.0.0.1:{}{TOKEN_PATH}", addr.port()),
            username: username.to_owned(),
            lifetime_secs: AtomicU64::new(lifetime.as_secs()),
            ..State::default()
        });
        let serving = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), Arc::clone(&serving));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, hyper::Error>(answer(&state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        IdentityProvider { addr, state, task }
    }

    /// Accepts the client secret `secret`.
    pub fn accept_secret(&self, secret: &str) {
        *self.state.secret.lock().unwrap() = Some(secret.to_owned());
    }

    /// Accepts assertions signed by the key of the PEM certificate `cert` (an RSA
    /// key, RS256), named by its SHA-1 thumbprint.
    pub fn accept_certificate(&self, cert: &Path) {
        *self.state.certificate.lock().unwrap() = Some(registered(cert));
    }

    /// Accepts JWT-bearer assertions of the service account `client_email` whose key
    /// is that of the PEM certificate `cert`.
    pub fn accept_service_account(&self, client_email: &str, cert: &Path) {
        *self.state.service_account.lock().unwrap() =
            Some((client_email.to_owned(), registered(cert)));
    }

    /// The token endpoint's URL.
    pub fn token_url(&self) -> &str {
        &self.state.token_url
    }

    /// The introspection endpoint's URL.
    pub fn introspection_url(&self) -> String {
        format!("https://127.0.0.1:{}{INTROSPECTION_PATH}", self.addr.port())
    }

    /// Requests to the token endpoint so far.
    pub fn token_requests(&self) -> usize {
        self.state.token_requests.load(Ordering::SeqCst)
    }

    /// Introspection requests so far: one per login that reached Dovecot's passdb.
    pub fn introspections(&self) -> usize {
        self.state.introspections.load(Ordering::SeqCst)
    }

    /// Makes the mailbox refuse every token (introspection says inactive).
    pub fn refuse_at_mailbox(&self, refuse: bool) {
        self.state
            .refused_at_mailbox
            .store(refuse, Ordering::SeqCst);
    }

    /// Revokes every token issued so far: they no longer introspect as active.
    pub fn revoke_all(&self) {
        self.state.issued.lock().unwrap().clear();
    }

    /// Every token issued and every secret a request carried (client secrets,
    /// signed assertions): what must never be shown.
    pub fn secrets_seen(&self) -> Vec<String> {
        let mut seen = self.state.all_issued.lock().unwrap().clone();
        seen.extend(self.state.carried.lock().unwrap().iter().cloned());
        seen.sort();
        seen.dedup();
        seen
    }

    /// Every token issued so far.
    pub fn tokens(&self) -> Vec<String> {
        self.state.all_issued.lock().unwrap().clone()
    }

    /// The `X-AnchorMailbox` of every bearer check so far.
    pub fn anchors(&self) -> Vec<String> {
        self.state.anchors.lock().unwrap().clone()
    }

    /// A checker for in-process mail servers.
    pub fn checker(&self) -> TokenChecker {
        TokenChecker(Arc::clone(&self.state))
    }
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The registration of the certificate at `cert`.
fn registered(cert: &Path) -> Registered {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_file(cert).expect("a PEM certificate");
    let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("an X.509 certificate");
    Registered {
        thumbprint: ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der)
            .as_ref()
            .to_vec(),
        public_key: parsed.public_key().subject_public_key.data.to_vec(),
    }
}

async fn answer(state: &State, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    if path == BEARER_CHECK_PATH {
        return bearer_check(state, request.headers());
    }
    let body = match request.into_body().collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    for key in ["client_secret", "client_assertion", "assertion", "token"] {
        // Dovecot's introspection sends an empty `client_secret`: nothing to hide.
        if let Some(value) = form.get(key).filter(|value| !value.is_empty()) {
            state.carried.lock().unwrap().push(value.clone());
        }
    }
    match path.as_str() {
        TOKEN_PATH => token(state, &form),
        INTROSPECTION_PATH => introspect(state, &form),
        _ => json(404, serde_json::json!({"error": "not_found"})),
    }
}

fn json(status: u16, body: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a response")
}

/// An Entra ID-style refusal.
fn refuse(code: u64, description: &str) -> Response<Full<Bytes>> {
    json(
        401,
        serde_json::json!({
            "error": "invalid_client",
            "error_description": format!(
                "AADSTS{code}: {description}\r\nTrace ID: 00000000-0000-0000-0000-000000000000\r\nTimestamp: 2026-01-01 00:00:00Z"
            ),
            "error_codes": [code],
        }),
    )
}

fn token(state: &State, form: &HashMap<String, String>) -> Response<Full<Bytes>> {
    state.token_requests.fetch_add(1, Ordering::SeqCst);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let accepted = match field("grant_type") {
        "client_credentials" if field("client_id") != CLIENT_ID => Err(refuse(
            700016,
            "Application with identifier was not found in the directory 'contoso.test'.",
        )),
        "client_credentials" if form.contains_key("client_secret") => {
            let expected = state.secret.lock().unwrap().clone();
            if expected.as_deref() == Some(field("client_secret")) {
                Ok(())
            } else {
                Err(refuse(
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
                ))
            }
        }
        "client_credentials" => {
            let registered = state.certificate.lock().unwrap().clone();
            let claims = registered.and_then(|key| verify(field("client_assertion"), &key));
            match claims {
                Some(claims)
                    if claims["iss"] == CLIENT_ID
                        && claims["sub"] == CLIENT_ID
                        && claims["aud"] == state.token_url.as_str()
                        && claims["jti"].is_string()
                        && field("client_assertion_type")
                            == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" =>
                {
                    Ok(())
                }
                _ => Err(refuse(
                    700027,
                    "The certificate with identifier used to sign the client assertion is not registered on application.",
                )),
            }
        }
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            let account = state.service_account.lock().unwrap().clone();
            match account {
                Some((email, key)) => match verify(field("assertion"), &key) {
                    Some(claims)
                        if claims["iss"] == email.as_str()
                            && claims["sub"] == state.username.as_str()
                            && claims["scope"] == "https://mail.google.com/"
                            && claims["aud"] == state.token_url.as_str() =>
                    {
                        Ok(())
                    }
                    _ => Err(json(
                        400,
                        serde_json::json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
                    )),
                },
                None => Err(json(
                    401,
                    serde_json::json!({"error": "unauthorized_client"}),
                )),
            }
        }
        _ => Err(json(
            400,
            serde_json::json!({"error": "unsupported_grant_type"}),
        )),
    };
    if let Err(refusal) = accepted {
        return refusal;
    }
    let serial = state.serial.fetch_add(1, Ordering::SeqCst);
    let b64 = |text: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
    let token = format!(
        "{}.{}.c2ln{serial}",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&serde_json::json!({"roles": ROLES, "serial": serial, "aud": "https://outlook.office365.com"}).to_string())
    );
    let lifetime = state.lifetime_secs.load(Ordering::SeqCst);
    state.issued.lock().unwrap().insert(
        token.clone(),
        Instant::now() + Duration::from_secs(lifetime),
    );
    state.all_issued.lock().unwrap().push(token.clone());
    json(
        200,
        serde_json::json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }),
    )
}

/// Dovecot's question: is this token active, and whose is it?
fn introspect(state: &State, form: &HashMap<String, String>) -> Response<Full<Bytes>> {
    let token = form.get("token").map(String::as_str).unwrap_or_default();
    let active = state.accepts(token);
    // Dovecot needs the user name in every answer: `{"active": false}` alone is a
    // temporary failure rather than a refusal.
    json(
        200,
        serde_json::json!({"active": active, "username": state.username}),
    )
}

/// nginx's question (`auth_request`): may this request's bearer in? 204 or 401.
fn bearer_check(state: &State, headers: &hyper::HeaderMap) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    state
        .anchors
        .lock()
        .unwrap()
        .push(header("x-anchormailbox"));
    let token = header("authorization")
        .strip_prefix("Bearer ")
        .unwrap_or_default()
        .to_owned();
    let status = if state.accepts(&token) { 204 } else { 401 };
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .expect("a response")
}

impl State {
    /// Whether the mailbox takes `token` (counted as one login attempt).
    fn accepts(&self, token: &str) -> bool {
        self.introspections.fetch_add(1, Ordering::SeqCst);
        !self.refused_at_mailbox.load(Ordering::SeqCst)
            && self
                .issued
                .lock()
                .unwrap()
                .get(token)
                .is_some_and(|until| Instant::now() < *until)
    }
}

/// A handle that checks tokens as the mailbox would, for in-process servers.
#[derive(Clone)]
pub struct TokenChecker(Arc<State>);

impl TokenChecker {
    /// Whether the mailbox takes `token` (counted as one login attempt).
    pub fn accepts(&self, token: &str) -> bool {
        self.0.accepts(token)
    }
}

/// The claims of `jwt` when it is an RS256 JWT naming `key` by `x5t` (or by nothing,
/// for a service account) whose signature verifies and which has not expired.
fn verify(jwt: &str, key: &Registered) -> Option<serde_json::Value> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = jwt.split('.');
    let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(header).ok()?).ok()?;
    if header["alg"] != "RS256" {
        return None;
    }
    if let Some(x5t) = header["x5t"].as_str()
        && b64.decode(x5t).ok()? != key.thumbprint
    {
        return None;
    }
    let signed = &jwt[..jwt.rfind('.')?];
    ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &key.public_key,
    )
    .verify(signed.as_bytes(), &b64.decode(signature).ok()?)
    .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&b64.decode(claims).ok()?).ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    (claims["exp"].as_u64()? > now).then_some(claims)
}

/// An RSA application key and a self-signed certificate for it, as an administrator
/// makes them for an app registration (`openssl` is the tool Microsoft documents).
/// Returns `(certificate, key)` paths in `dir`.
pub fn rsa_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.pem"));
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .output()
            .expect("run openssl (Debian package `openssl`)");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        key.to_str().unwrap(),
    ]);
    run(&[
        "req",
        "-x509",
        "-key",
        key.to_str().unwrap(),
        "-subj",
        &format!("/CN={name}"),
        "-days",
        "30",
        "-out",
        cert.to_str().unwrap(),
    ]);
    let owner_only = std::os::unix::fs::PermissionsExt::from_mode(0o600);
    std::fs::set_permissions(&key, owner_only).expect("chmod the key");
    (cert, key)
}
