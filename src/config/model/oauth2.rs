//! An OAuth2 login as the configuration describes it (`auth.oauth2`): where the access
//! token comes from (the identity provider's token endpoint, the client and its
//! credential) and how the mail server is shown it (XOAUTH2 or OAUTHBEARER).
//!
//! Every secret here — a client secret, a private key — prints as `<redacted>`.

use std::fmt;
use std::sync::Arc;

use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};

use super::Secret;

/// An OAuth2 login: the client-credentials grant (RFC 6749 §4.4) with a secret or a
/// certificate (a signed client assertion, RFC 7523 §2.2), or the JWT-bearer grant
/// (RFC 7523 §2.1) of a Google service account acting as a mailbox.
#[derive(Debug)]
pub struct OAuth2 {
    /// The identity provider's token endpoint (`https://`).
    pub token_url: url::Url,
    /// The application (client) id; a service account's `client_email`.
    pub client_id: String,
    /// How the client proves who it is.
    pub credential: ClientCredential,
    /// The scope asked for (`https://outlook.office365.com/.default`).
    pub scope: String,
    /// The mailbox a service account acts as (the assertion's `sub`); `None` for the
    /// client-credentials grant.
    pub subject: Option<String>,
    /// The SASL mechanism the mail protocols use.
    pub mechanism: Mechanism,
}

impl OAuth2 {
    /// The grant this login uses.
    pub fn grant(&self) -> Grant {
        match self.credential {
            ClientCredential::ServiceAccount(_) => Grant::JwtBearer,
            ClientCredential::Secret(_) | ClientCredential::Certificate(_) => {
                Grant::ClientCredentials
            }
        }
    }

    /// The identity provider's host name (where the `token` phase goes).
    pub fn identity_provider(&self) -> String {
        super::url_host(&self.token_url)
    }

    /// Whose identity provider this is, from the token endpoint: Microsoft's hosts, or
    /// the path only Entra ID's v2 endpoint has (`/TENANT/oauth2/v2.0/token`, also
    /// behind a proxy), or Google's hosts.
    pub fn provider(&self) -> Provider {
        let host = self.identity_provider().to_ascii_lowercase();
        if host == "login.microsoftonline.com"
            || host.ends_with(".microsoftonline.com")
            || host == "login.microsoftonline.us"
            || host == "login.partner.microsoftonline.cn"
            || self.token_url.path().ends_with("/oauth2/v2.0/token")
        {
            Provider::Microsoft
        } else if host.ends_with("googleapis.com") || host == "accounts.google.com" {
            Provider::Google
        } else {
            Provider::Other
        }
    }

    /// A digest of everything that decides which token the identity provider hands
    /// out — endpoint, client, its credential, scope and subject — so that tokens are
    /// shared exactly between logins that would get the same one, and a changed
    /// secret is a new login. Never shown anywhere.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [
            self.token_url.as_str(),
            &self.client_id,
            &self.scope,
            self.subject.as_deref().unwrap_or("\0"),
        ] {
            digest.update(part.as_bytes());
            digest.update(b"\0");
        }
        match &self.credential {
            ClientCredential::Secret(secret) => {
                digest.update(b"secret\0");
                digest.update(secret.expose().as_bytes());
            }
            ClientCredential::Certificate(certificate) => {
                digest.update(b"certificate\0");
                digest.update(&certificate.sha256_thumbprint);
                digest.update(&certificate.key.digest);
            }
            ClientCredential::ServiceAccount(account) => {
                digest.update(b"service account\0");
                digest.update(&account.key.digest);
            }
        }
        let mut out = [0; 32];
        out.copy_from_slice(digest.finish().as_ref());
        out
    }
}

/// The OAuth2 grant a login uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `client_credentials` (RFC 6749 §4.4): an application acting as itself, as
    /// Microsoft documents for app-only IMAP, POP and SMTP.
    ClientCredentials,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523 §2.1): a signed
    /// assertion naming the mailbox (`sub`), as Google's domain-wide delegation uses.
    JwtBearer,
}

/// Whose identity provider a token endpoint belongs to: decides which of the
/// provider's documented errors and setup steps a failure is explained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Microsoft Entra ID (Microsoft 365).
    Microsoft,
    /// Google (Workspace).
    Google,
    /// Any other provider.
    Other,
}

/// How the mail protocols present the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// OAUTHBEARER when the server offers it, else XOAUTH2.
    Auto,
    /// Google's and Microsoft's `XOAUTH2`.
    Xoauth2,
    /// RFC 7628's `OAUTHBEARER`.
    Oauthbearer,
}

impl Mechanism {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Auto => "auto",
            Mechanism::Xoauth2 => "xoauth2",
            Mechanism::Oauthbearer => "oauthbearer",
        }
    }
}

/// How the client proves who it is to the token endpoint.
#[derive(Debug)]
pub enum ClientCredential {
    /// A client secret (`client_secret_file`, `client_secret_env`).
    Secret(Secret),
    /// A certificate registered with the application and its private key: the client
    /// signs an assertion (`client_certificate`, `client_key`).
    Certificate(Arc<ClientCertificate>),
    /// A Google service-account key (`service_account_file`).
    ServiceAccount(Arc<ServiceAccount>),
}

/// A client certificate and its key.
pub struct ClientCertificate {
    /// The certificate's private key.
    pub key: SigningKey,
    /// SHA-1 of the certificate (DER): the `x5t` header Microsoft looks the
    /// certificate up by.
    pub sha1_thumbprint: [u8; 20],
    /// SHA-256 of the certificate (DER): the `x5t#S256` header.
    pub sha256_thumbprint: [u8; 32],
    /// The certificate's notAfter, Unix seconds: an expired app certificate breaks
    /// every site's login at once.
    pub not_after: i64,
    /// The certificate's subject, for messages.
    pub subject: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("subject", &self.subject)
            .field("not_after", &self.not_after)
            .field("key", &self.key)
            .finish()
    }
}

/// A Google service account's key.
#[derive(Debug)]
pub struct ServiceAccount {
    /// The key that signs the assertion.
    pub key: SigningKey,
    /// `private_key_id`, sent as the assertion's `kid`.
    pub key_id: Option<String>,
}

/// A private key that signs JWTs: RSA (`RS256`, what Microsoft and Google require) or
/// ECDSA P-256 (`ES256`, for other providers). `Debug` shows only the algorithm.
pub struct SigningKey {
    pair: KeyPair,
    /// SHA-256 of the key's DER: identifies the key in [`OAuth2::fingerprint`].
    digest: [u8; 32],
}

enum KeyPair {
    Rsa(RsaKeyPair),
    Ecdsa(EcdsaKeyPair),
}

/// Why a private key cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

impl SigningKey {
    /// The key in `der` (`pkcs8`: PKCS#8; otherwise PKCS#1 RSA).
    ///
    /// # Errors
    ///
    /// [`KeyError`] when it is neither an RSA key of 2048 bits or more nor a P-256 key.
    pub fn from_der(der: &[u8], pkcs8: bool) -> Result<SigningKey, KeyError> {
        let pair = if pkcs8 {
            match RsaKeyPair::from_pkcs8(der) {
                Ok(rsa) => KeyPair::Rsa(rsa),
                Err(rsa_error) => {
                    let rng = ring::rand::SystemRandom::new();
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                        .map(KeyPair::Ecdsa)
                        .map_err(|_| {
                            KeyError(format!(
                                "it is neither an RSA key (2048 to 8192 bits) nor an ECDSA P-256 \
                             key ({rsa_error})"
                            ))
                        })?
                }
            }
        } else {
            KeyPair::Rsa(
                RsaKeyPair::from_der(der)
                    .map_err(|error| KeyError(format!("it is not a usable RSA key ({error})")))?,
            )
        };
        let mut digest = [0; 32];
        digest.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
        Ok(SigningKey { pair, digest })
    }

    /// The JWS algorithm: `RS256` or `ES256`.
    pub fn algorithm(&self) -> &'static str {
        match self.pair {
            KeyPair::Rsa(_) => "RS256",
            KeyPair::Ecdsa(_) => "ES256",
        }
    }

    /// The public key as a certificate's subjectPublicKey holds it (an RSAPublicKey,
    /// or the uncompressed point), to check that a key belongs to a certificate.
    pub fn public_key(&self) -> &[u8] {
        match &self.pair {
            KeyPair::Rsa(rsa) => rsa.public().as_ref(),
            KeyPair::Ecdsa(ecdsa) => ecdsa.public_key().as_ref(),
        }
    }

    /// Signs `message` (a JWS signing input).
    ///
    /// # Errors
    ///
    /// [`KeyError`] when the signing itself fails (ring reports no more than that).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let rng = ring::rand::SystemRandom::new();
        let failed = |_| KeyError("signing the client assertion failed".to_owned());
        match &self.pair {
            KeyPair::Rsa(rsa) => {
                let mut signature = vec![0; rsa.public().modulus_len()];
                rsa.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(failed)?;
                Ok(signature)
            }
            KeyPair::Ecdsa(ecdsa) => {
                Ok(ecdsa.sign(&rng, message).map_err(failed)?.as_ref().to_vec())
            }
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, <redacted>)", self.algorithm())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(token_url: &str) -> OAuth2 {
        OAuth2 {
            token_url: url::Url::parse(token_url).unwrap(),
            client_id: "c".into(),
            credential: ClientCredential::Secret(Secret::new("s".into())),
            scope: "x".into(),
            subject: None,
            mechanism: Mechanism::Auto,
        }
    }

    #[test]
    fn an_ecdsa_key_signs_what_its_public_key_verifies() {
        let pair = rcgen::KeyPair::generate().unwrap();
        let key = SigningKey::from_der(&pair.serialize_der(), true).unwrap();
        assert_eq!(key.algorithm(), "ES256");
        let signature = key.sign(b"header.claims").unwrap();
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, key.public_key())
            .verify(b"header.claims", &signature)
            .unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(ES256, <redacted>)");
        assert!(SigningKey::from_der(b"not a key", true).is_err());
        assert!(SigningKey::from_der(b"not a key", false).is_err());
    }

    #[test]
    fn the_provider_is_known_by_its_token_endpoint() {
        let provider = |url| login(url).provider();
        assert_eq!(
            provider("https://login.microsoftonline.com/contoso/oauth2/v2.0/token"),
            Provider::Microsoft
        );
        assert_eq!(
            provider("https://sso.example.com/tenant/oauth2/v2.0/token"),
            Provider::Microsoft
        );
        assert_eq!(
            provider("https://oauth2.googleapis.com/token"),
            Provider::Google
        );
        assert_eq!(provider("https://idp.example.com/token"), Provider::Other);
    }

    #[test]
    fn a_changed_secret_is_another_login() {
        let one = login("https://idp.example.com/token");
        let mut other = login("https://idp.example.com/token");
        assert_eq!(one.fingerprint(), other.fingerprint());
        other.credential = ClientCredential::Secret(Secret::new("t".into()));
        assert_ne!(one.fingerprint(), other.fingerprint());
        other.credential = ClientCredential::Secret(Secret::new("s".into()));
        other.scope = "y".into();
        assert_ne!(one.fingerprint(), other.fingerprint());
    }
}
