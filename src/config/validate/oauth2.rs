//! `auth.oauth2:` — the token endpoint, the client and exactly one credential (a
//! client secret, a certificate with its key, or a Google service-account key), the
//! scope and the SASL mechanism. Certificates and keys are parsed here, so a key that
//! cannot sign or does not belong to its certificate is reported at load, with its
//! position, rather than at every probe.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_saphyr::{Location, Spanned};

use super::Validator;
use super::auth::Unread;
use crate::config::raw::RawOAuth2;
use crate::config::{
    ClientCertificate, ClientCredential, ConfigError, Mechanism, OAuth2, Secret, ServiceAccount,
    SigningKey, url_host,
};

/// Google's token endpoint, for a service-account file that does not name one.
const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The scope of Google's IMAP, POP and SMTP access.
const GOOGLE_MAIL_SCOPE: &str = "https://mail.google.com/";
/// The longest client id or scope accepted: real ones are under 200 characters.
const MAX_OAUTH2_TEXT_LEN: usize = 1024;

/// The keys that name the client's credential; exactly one kind is set.
const CREDENTIAL_KEYS: &str = "`client_secret_file`, `client_secret_env`, `client_certificate` \
                               with `client_key`, or `service_account_file` (Google)";

impl Validator<'_> {
    /// `auth.oauth2` at `field`, for the mailbox `username`.
    pub(super) fn oauth2(
        &self,
        oauth2: &Spanned<RawOAuth2>,
        field: &str,
        username: &str,
    ) -> Result<OAuth2, ConfigError> {
        let errors = &self.site;
        let raw = &oauth2.value;
        let key = |name: &str| format!("{field}.{name}");
        let set: Vec<(&str, Location)> = [
            (
                "client_secret_file",
                raw.client_secret_file.as_ref().map(|v| v.referenced),
            ),
            (
                "client_secret_env",
                raw.client_secret_env.as_ref().map(|v| v.referenced),
            ),
            (
                "client_certificate",
                raw.client_certificate
                    .as_ref()
                    .or(raw.client_key.as_ref())
                    .map(|v| v.referenced),
            ),
            (
                "service_account_file",
                raw.service_account_file.as_ref().map(|v| v.referenced),
            ),
        ]
        .into_iter()
        .filter_map(|(name, at)| at.map(|at| (name, at)))
        .collect();
        match set.as_slice() {
            [] => {
                return Err(errors.at(
                    oauth2.referenced,
                    field,
                    format!("`oauth2` needs the client's credential: {CREDENTIAL_KEYS}"),
                ));
            }
            [_] => {}
            [_, (second, at), ..] => {
                return Err(errors.at(
                    *at,
                    key(second),
                    format!("set only one of {CREDENTIAL_KEYS}"),
                ));
            }
        }
        let mechanism = match &raw.mechanism {
            None => Mechanism::Auto,
            Some(text) => match text.value.to_ascii_lowercase().as_str() {
                "auto" => Mechanism::Auto,
                "xoauth2" => Mechanism::Xoauth2,
                "oauthbearer" => Mechanism::Oauthbearer,
                other => {
                    return Err(errors.at(
                        text.referenced,
                        key("mechanism"),
                        format!(
                            "unknown mechanism `{other}`; expected auto (OAUTHBEARER when the \
                             server offers it, else XOAUTH2), xoauth2 or oauthbearer"
                        ),
                    ));
                }
            },
        };
        if let Some(file) = &raw.service_account_file {
            return self.service_account(raw, file, field, username, mechanism);
        }
        if let Some(subject) = &raw.subject {
            return Err(errors.at(
                subject.referenced,
                key("subject"),
                "`subject` (the mailbox a service account acts as) applies only with \
                 `service_account_file`",
            ));
        }
        let token_url = match &raw.token_url {
            Some(url) => token_url(self, url, &key("token_url"))?,
            None => {
                return Err(errors.at(
                    oauth2.referenced,
                    key("token_url"),
                    "`oauth2` needs `token_url`: the identity provider's token endpoint, e.g. \
                     `https://login.microsoftonline.com/TENANT/oauth2/v2.0/token`",
                ));
            }
        };
        let client_id = required_text(self, raw.client_id.as_ref(), oauth2, &key("client_id"), {
            "the application (client) id"
        })?;
        let scope = required_text(self, raw.scope.as_ref(), oauth2, &key("scope"), {
            "the scope to ask for, e.g. `https://outlook.office365.com/.default` (Microsoft \
             365) or `https://mail.google.com/` (Google)"
        })?;
        let credential = if let Some(file) = &raw.client_secret_file {
            ClientCredential::Secret(self.secret_line(file, &key("client_secret_file"))?)
        } else if let Some(env) = &raw.client_secret_env {
            ClientCredential::Secret(self.secret_env(env, &key("client_secret_env"))?)
        } else {
            self.certificate(raw, field)?
        };
        Ok(OAuth2 {
            token_url,
            client_id,
            credential,
            scope,
            subject: None,
            mechanism,
        })
    }

    /// `client_certificate` with `client_key`: both present, the key able to sign and
    /// belonging to the certificate.
    fn certificate(&self, raw: &RawOAuth2, field: &str) -> Result<ClientCredential, ConfigError> {
        let errors = &self.site;
        let (certificate, key) = match (&raw.client_certificate, &raw.client_key) {
            (Some(certificate), Some(key)) => (certificate, key),
            (Some(certificate), None) => {
                return Err(errors.at(
                    certificate.referenced,
                    format!("{field}.client_key"),
                    "`client_certificate` needs `client_key`: the certificate's private key \
                     (PEM)",
                ));
            }
            (None, Some(key)) => {
                return Err(errors.at(
                    key.referenced,
                    format!("{field}.client_certificate"),
                    "`client_key` needs `client_certificate`: the certificate registered \
                     with the application (PEM)",
                ));
            }
            (None, None) => unreachable!("the caller checked a credential is set"),
        };
        let certificate_field = format!("{field}.client_certificate");
        let key_field = format!("{field}.client_key");
        let parsed = self
            .read_secret(certificate, &certificate_field)
            .and_then(|pem| parse_certificate(&pem, &certificate.value));
        let Some((der, not_after, subject)) =
            self.resolved(parsed, certificate.referenced, &certificate_field)?
        else {
            return Ok(ClientCredential::Secret(Secret::new(String::new())));
        };
        let signing = self
            .read_secret(key, &key_field)
            .and_then(|pem| signing_key(&pem, &key.value));
        let Some(signing) = self.resolved(signing, key.referenced, &key_field)? else {
            return Ok(ClientCredential::Secret(Secret::new(String::new())));
        };
        let spki = x509_parser::parse_x509_certificate(&der)
            .map(|(_, cert)| cert.public_key().subject_public_key.data.to_vec())
            .unwrap_or_default();
        if spki != signing.public_key() {
            return Err(errors.at(
                key.referenced,
                key_field,
                format!(
                    "`{}` is not the private key of `{}`",
                    key.value.display(),
                    certificate.value.display()
                ),
            ));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if not_after < now {
            self.warn(
                certificate.referenced,
                &certificate_field,
                format!(
                    "`{}` expired at {}: the identity provider will refuse it",
                    certificate.value.display(),
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH
                            + std::time::Duration::from_secs(u64::try_from(not_after).unwrap_or(0))
                    )
                ),
            );
        }
        let mut sha1_thumbprint = [0; 20];
        sha1_thumbprint.copy_from_slice(
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der).as_ref(),
        );
        let mut sha256_thumbprint = [0; 32];
        sha256_thumbprint
            .copy_from_slice(ring::digest::digest(&ring::digest::SHA256, &der).as_ref());
        Ok(ClientCredential::Certificate(Arc::new(ClientCertificate {
            key: signing,
            sha1_thumbprint,
            sha256_thumbprint,
            not_after,
            subject,
        })))
    }

    /// `service_account_file`: a Google service-account JSON key; the token endpoint
    /// and the client come from it, the mailbox (`subject`) defaults to the login name.
    fn service_account(
        &self,
        raw: &RawOAuth2,
        file: &Spanned<PathBuf>,
        field: &str,
        username: &str,
        mechanism: Mechanism,
    ) -> Result<OAuth2, ConfigError> {
        let errors = &self.site;
        let key_field = format!("{field}.service_account_file");
        if let Some(client_id) = &raw.client_id {
            return Err(errors.at(
                client_id.referenced,
                format!("{field}.client_id"),
                "the client comes from `service_account_file` (its `client_email`): remove \
                 `client_id`",
            ));
        }
        let parsed = self
            .read_secret(file, &key_field)
            .and_then(|json| parse_service_account(&json, &file.value));
        let account = self.resolved(parsed, file.referenced, &key_field)?;
        let token_url = match (&raw.token_url, &account) {
            (Some(url), _) => token_url(self, url, &format!("{field}.token_url"))?,
            (None, Some(account)) => account.token_url.clone(),
            (None, None) => url::Url::parse(GOOGLE_TOKEN_URL).expect("a fixed URL parses"),
        };
        let subject = match &raw.subject {
            Some(subject) if subject.value.trim().is_empty() => {
                return Err(errors.at(
                    subject.referenced,
                    format!("{field}.subject"),
                    "the mailbox the service account acts as is empty",
                ));
            }
            Some(subject) => subject.value.trim().to_owned(),
            None => username.to_owned(),
        };
        let scope = match &raw.scope {
            Some(scope) => checked_text(self, scope, &format!("{field}.scope"))?,
            None => GOOGLE_MAIL_SCOPE.to_owned(),
        };
        let (client_id, credential) = match account {
            Some(account) => (
                account.client_email,
                ClientCredential::ServiceAccount(Arc::new(ServiceAccount {
                    key: account.key,
                    key_id: account.key_id,
                })),
            ),
            None => (
                String::new(),
                ClientCredential::Secret(Secret::new(String::new())),
            ),
        };
        Ok(OAuth2 {
            token_url,
            client_id,
            credential,
            scope,
            subject: Some(subject),
            mechanism,
        })
    }
}

/// A token endpoint: an `https://` URL with a valid host and no user name or
/// password in it.
fn token_url(
    validator: &Validator<'_>,
    url: &Spanned<String>,
    field: &str,
) -> Result<url::Url, ConfigError> {
    let invalid = |why: &str| {
        validator.site.at(
            url.referenced,
            field,
            // Not repeated: a URL can carry a secret.
            format!(
                "the token URL {why}; write the identity provider's https:// token endpoint, \
                 e.g. `https://login.microsoftonline.com/TENANT/oauth2/v2.0/token`"
            ),
        )
    };
    let parsed = url::Url::parse(url.value.trim()).map_err(|_| invalid("is not a valid URL"))?;
    if parsed.scheme() != "https" {
        return Err(invalid(
            "is not an https:// URL (a client secret and the token must not cross the \
             network in clear text)",
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid("carries credentials"));
    }
    let host = url_host(&parsed);
    if host.is_empty()
        || (host.parse::<std::net::IpAddr>().is_err() && super::normalise_name(&host).is_none())
    {
        return Err(invalid("has no valid host name"));
    }
    Ok(parsed)
}

/// A required text value: present, non-empty, bounded, without control characters.
fn required_text(
    validator: &Validator<'_>,
    value: Option<&Spanned<String>>,
    oauth2: &Spanned<RawOAuth2>,
    field: &str,
    what: &str,
) -> Result<String, ConfigError> {
    let key = field.rsplit('.').next().unwrap_or(field);
    let value = value.ok_or_else(|| {
        validator.site.at(
            oauth2.referenced,
            field,
            format!("`oauth2` needs `{key}`: {what}"),
        )
    })?;
    checked_text(validator, value, field)
}

fn checked_text(
    validator: &Validator<'_>,
    value: &Spanned<String>,
    field: &str,
) -> Result<String, ConfigError> {
    let text = value.value.trim();
    if text.is_empty() || text.len() > MAX_OAUTH2_TEXT_LEN || text.chars().any(char::is_control) {
        return Err(validator.site.at(
            value.referenced,
            field,
            format!("must be 1 to {MAX_OAUTH2_TEXT_LEN} characters without control characters"),
        ));
    }
    Ok(text.to_owned())
}

/// The first certificate of a PEM file: its DER, notAfter and subject.
fn parse_certificate(pem: &[u8], path: &std::path::Path) -> Result<(Vec<u8>, i64, String), Unread> {
    let invalid = |why: String| Unread::Invalid(format!("`{}` {why}", path.display()));
    let der = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or_else(|| {
            invalid("holds no certificate (expected a PEM `BEGIN CERTIFICATE` block)".into())
        })?
        .map_err(|error| invalid(format!("is not valid PEM: {error}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|error| invalid(format!("is not a valid X.509 certificate: {error}")))?;
    let not_after = cert.validity().not_after.timestamp();
    let subject = cert.subject().to_string();
    Ok((der.to_vec(), not_after, subject))
}

/// The private key of a PEM file, able to sign.
fn signing_key(pem: &[u8], path: &std::path::Path) -> Result<SigningKey, Unread> {
    let invalid = |why: String| Unread::Invalid(format!("`{}` {why}", path.display()));
    let key = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|_| invalid("holds no PEM private key".into()))?;
    let signing = match &key {
        PrivateKeyDer::Pkcs8(der) => SigningKey::from_der(der.secret_pkcs8_der(), true),
        PrivateKeyDer::Pkcs1(der) => SigningKey::from_der(der.secret_pkcs1_der(), false),
        _ => {
            return Err(invalid(
                "is not a PKCS#8 or PKCS#1 key: convert it with `openssl pkcs8 -topk8 -nocrypt`"
                    .into(),
            ));
        }
    };
    signing.map_err(|error| invalid(format!("cannot sign: {error}")))
}

/// What a service-account file gives.
struct Account {
    client_email: String,
    key: SigningKey,
    key_id: Option<String>,
    token_url: url::Url,
}

/// A Google service-account JSON key (`"type": "service_account"`).
fn parse_service_account(json: &[u8], path: &std::path::Path) -> Result<Account, Unread> {
    #[derive(serde::Deserialize)]
    struct File {
        #[serde(rename = "type")]
        kind: Option<String>,
        client_email: Option<String>,
        private_key: Option<String>,
        private_key_id: Option<String>,
        token_uri: Option<String>,
    }
    let invalid = |why: &str| Unread::Invalid(format!("`{}` {why}", path.display()));
    let file: File = serde_json::from_slice(json).map_err(|_| {
        invalid("is not a service-account JSON key (download one from the Google Cloud console)")
    })?;
    if file.kind.as_deref() != Some("service_account") {
        return Err(invalid(
            "is not a service-account key (`type` is not `service_account`)",
        ));
    }
    let client_email = file
        .client_email
        .filter(|email| email.contains('@') && !email.chars().any(char::is_control))
        .ok_or_else(|| invalid("has no `client_email`"))?;
    let pem = file
        .private_key
        .ok_or_else(|| invalid("has no `private_key`"))?;
    let key = signing_key(pem.as_bytes(), path)?;
    let token_url = match file.token_uri {
        Some(uri) => url::Url::parse(&uri)
            .ok()
            .filter(|url| url.scheme() == "https")
            .ok_or_else(|| invalid("names a `token_uri` that is not an https:// URL"))?,
        None => url::Url::parse(GOOGLE_TOKEN_URL).expect("a fixed URL parses"),
    };
    Ok(Account {
        client_email,
        key,
        key_id: file
            .private_key_id
            .filter(|id| id.len() <= MAX_OAUTH2_TEXT_LEN),
        token_url,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn pem_pair(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["app.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn load(yaml: &str) -> Result<crate::config::Config, String> {
        crate::config::from_str(yaml, Path::new("t.yaml")).map_err(|e| e.to_string())
    }

    fn certificate_target(cert: &Path, key: &Path) -> String {
        format!(
            "targets:\n  - name: m\n    protocol: imap\n    host: mail.example.com\n    auth:\n      \
             username: u@example.com\n      oauth2:\n        token_url: https://idp.example.com/token\n        \
             client_id: c\n        scope: s\n        client_certificate: \"{}\"\n        client_key: \"{}\"\n",
            cert.display(),
            key.display()
        )
    }

    #[test]
    fn a_key_must_belong_to_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pem_pair(dir.path(), "a");
        let (_, other_key) = pem_pair(dir.path(), "b");
        let config = load(&certificate_target(&cert, &key)).unwrap();
        let auth = config.targets[0]
            .spec
            .endpoint()
            .unwrap()
            .auth
            .as_ref()
            .unwrap();
        let ClientCredential::Certificate(certificate) = &auth.oauth2.as_ref().unwrap().credential
        else {
            panic!("a certificate credential");
        };
        assert!(certificate.not_after > 1_700_000_000);
        assert_eq!(certificate.key.algorithm(), "ES256");
        let error = load(&certificate_target(&cert, &other_key)).unwrap_err();
        assert!(error.contains("is not the private key of"), "{error}");
        let error = load(&certificate_target(&key, &key)).unwrap_err();
        assert!(error.contains("holds no certificate"), "{error}");
    }

    #[test]
    fn a_service_account_file_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = pem_pair(dir.path(), "sa");
        let file = dir.path().join("sa.json");
        let target = |file: &Path| {
            format!(
                "targets:\n  - name: g\n    protocol: imap\n    host: imap.gmail.com\n    auth:\n      \
                 username: probe@example.com\n      oauth2:\n        service_account_file: \"{}\"\n",
                file.display()
            )
        };
        let json = serde_json::json!({
            "type": "service_account",
            "private_key": std::fs::read_to_string(&key).unwrap(),
            "private_key_id": "k1",
            "client_email": "probe@project.iam.gserviceaccount.com",
        });
        std::fs::write(&file, json.to_string()).unwrap();
        let config = load(&target(&file)).unwrap();
        let oauth2 = config.targets[0]
            .spec
            .endpoint()
            .and_then(|e| e.auth.as_ref())
            .and_then(|a| a.oauth2.clone())
            .unwrap();
        assert_eq!(oauth2.token_url.as_str(), GOOGLE_TOKEN_URL);
        assert_eq!(oauth2.scope, GOOGLE_MAIL_SCOPE);
        assert_eq!(oauth2.subject.as_deref(), Some("probe@example.com"));
        assert_eq!(oauth2.client_id, "probe@project.iam.gserviceaccount.com");
        assert_eq!(oauth2.grant(), crate::config::Grant::JwtBearer);
        std::fs::write(&file, r#"{"type":"authorized_user"}"#).unwrap();
        let error = load(&target(&file)).unwrap_err();
        assert!(error.contains("is not a service-account key"), "{error}");
    }
}
