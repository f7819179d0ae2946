//! TLS for probes: the handshake as a typed step, and certificate facts.
//!
//! Verification is done by rustls' WebPKI verifier with the system roots plus any
//! `ca_file`, behind a [`ChainVerifier`] that remembers chains it has verified and the
//! facts read from them ([`verifier`]). A probe wraps that shared verifier in a
//! recording verifier of its own so that the facts of the presented chain are kept even
//! when verification fails: an expired certificate is then still reported with its
//! notAfter and issuer.

mod verifier;

use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::Resumption;
use rustls::client::danger::ServerCertVerifier;
use rustls::crypto::CryptoProvider;
use rustls::crypto::hash::HashAlgorithm;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, SignatureScheme, SupportedCipherSuite};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::{ErrorKind, ProbeError, TlsFacts};
pub use verifier::{ChainVerifier, VERIFIED_FOR, system_roots, verifier};
use verifier::{RecordingVerifier, RefuseAll};

/// The one crypto provider mailprobe uses: ring (no aws-lc-rs anywhere in the tree).
/// Built once: it is a fixed list of algorithms, and every handshake needs it.
///
/// Its cipher suites are ring's, with the SHA-256 suites offered before the SHA-384
/// ones (AES-128-GCM first, as Go's crypto/tls, Firefox and Chrome order them): a server
/// that follows the client's order (OpenSSL's default, so Dovecot's and Exim's) then
/// hashes the handshake with SHA-256, which current x86 and ARM CPUs run in hardware,
/// where ring's SHA-384 runs in software: about 5 % of a probe's CPU time
/// (docs/performance.md). Every suite stays offered.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| {
        let mut provider = rustls::crypto::ring::default_provider();
        provider
            .cipher_suites
            .sort_by_key(|suite| handshake_hash(*suite) != HashAlgorithm::SHA256);
        Arc::new(provider)
    }))
}

/// The signature schemes the probe offers for the server's CertificateVerify: all of
/// ring's, the SHA-256 ones first, for the reason the cipher suites are ordered so
/// ([`provider`]): an OpenSSL server signs with the first scheme of the client's list
/// its key allows, which was RSA-PSS with SHA-512 (in software) for an RSA key. Go's
/// crypto/tls puts the SHA-256 schemes first too.
pub fn verify_schemes() -> Vec<SignatureScheme> {
    static SCHEMES: OnceLock<Vec<SignatureScheme>> = OnceLock::new();
    SCHEMES
        .get_or_init(|| {
            let mut schemes = provider()
                .signature_verification_algorithms
                .supported_schemes();
            schemes.sort_by_key(|scheme| !signs_sha256(*scheme));
            schemes
        })
        .clone()
}

/// Whether `scheme` hashes with SHA-256 (Ed25519 hashes inside, cheaply).
fn signs_sha256(scheme: SignatureScheme) -> bool {
    matches!(
        scheme,
        SignatureScheme::ECDSA_NISTP256_SHA256
            | SignatureScheme::ED25519
            | SignatureScheme::RSA_PSS_SHA256
            | SignatureScheme::RSA_PKCS1_SHA256
    )
}

/// The hash a cipher suite's handshake runs on.
fn handshake_hash(suite: SupportedCipherSuite) -> HashAlgorithm {
    match suite {
        SupportedCipherSuite::Tls13(suite) => suite.common.hash_provider.algorithm(),
        SupportedCipherSuite::Tls12(suite) => suite.common.hash_provider.algorithm(),
    }
}

/// Everything of a probe's client configuration but the verifier, built once: the
/// provider, the safe protocol versions, no client certificate, no resumption. Each
/// handshake clones it (a few `Arc`s) and sets its own [`RecordingVerifier`], instead
/// of running the builder (protocol checks, provider validation) every time.
fn client_template() -> Result<&'static ClientConfig, ProbeError> {
    static TEMPLATE: OnceLock<Result<ClientConfig, String>> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let mut config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|error| error.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(RefuseAll))
                .with_no_client_auth();
            // A resumed session skips certificate verification: a monitor must see the
            // certificate every time, so every probe does a full handshake.
            config.resumption = Resumption::disabled();
            Ok(config)
        })
        .as_ref()
        .map_err(|error| ProbeError::new(ErrorKind::TlsHandshake, error.clone()))
}

/// Runs a TLS handshake over `stream`, verifying the server as `server_name`.
///
/// `facts` is filled in whether or not the handshake succeeds.
///
/// # Errors
///
/// A [`ProbeError`] whose kind separates certificate problems (expired, not yet valid,
/// wrong name, untrusted) from a handshake that broke down or a reset.
pub async fn handshake<S>(
    stream: S,
    server_name: &str,
    verifier: &Arc<ChainVerifier>,
    facts: &mut TlsFacts,
) -> Result<TlsStream<S>, ProbeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
        ProbeError::new(
            ErrorKind::TlsHandshake,
            format!("`{server_name}` cannot be used as a TLS server name"),
        )
    })?;
    let recording = Arc::new(RecordingVerifier {
        inner: Arc::clone(verifier),
        described: Mutex::new(None),
    });
    // The verifier stays per handshake (the chain it records is this handshake's);
    // the rest of the configuration is shared.
    let mut config = client_template()?.clone();
    config
        .dangerous()
        .set_certificate_verifier(Arc::clone(&recording) as Arc<dyn ServerCertVerifier>);
    let connector = TlsConnector::from(Arc::new(config));
    let outcome = connector.connect(name, stream).await;

    let described = recording
        .described
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    // No certificate (the handshake broke down before it): empty facts.
    *facts = described.map_or_else(TlsFacts::default, |facts| TlsFacts::clone(&facts));
    match outcome {
        Ok(stream) => {
            facts.version = stream.get_ref().1.protocol_version().map(version_name);
            Ok(stream)
        }
        Err(error) => Err(classify_handshake_error(&error, server_name)),
    }
}

/// Maps a failed handshake to a typed error.
pub fn classify_handshake_error(error: &std::io::Error, server_name: &str) -> ProbeError {
    if let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        let kind = match tls {
            rustls::Error::InvalidCertificate(cert) => match cert {
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    ErrorKind::CertExpired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    ErrorKind::CertNotYetValid
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => ErrorKind::CertNameMismatch,
                _ => ErrorKind::CertUntrusted,
            },
            _ => ErrorKind::TlsHandshake,
        };
        let message = match kind {
            ErrorKind::CertNameMismatch => {
                format!("the certificate is not valid for `{server_name}`: {tls}")
            }
            _ => format!("TLS handshake failed: {tls}"),
        };
        return ProbeError::new(kind, message);
    }
    match error.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => ProbeError::new(
            ErrorKind::ConnectionReset,
            format!("the server reset the connection during the TLS handshake: {error}"),
        ),
        std::io::ErrorKind::UnexpectedEof => ProbeError::new(
            ErrorKind::TlsHandshake,
            "the server closed the connection during the TLS handshake",
        ),
        _ => ProbeError::new(
            ErrorKind::TlsHandshake,
            format!("TLS handshake failed: {error}"),
        ),
    }
}

/// Facts about a chain of `chain_len` certificates whose leaf is `leaf`.
fn certificate_facts(leaf: &CertificateDer<'_>, chain_len: usize) -> TlsFacts {
    let mut facts = TlsFacts {
        chain_len,
        ..TlsFacts::default()
    };
    let Ok((_, cert)) = X509Certificate::from_der(leaf.as_ref()) else {
        return facts;
    };
    facts.not_after = Some(cert.validity().not_after.timestamp());
    facts.not_before = Some(cert.validity().not_before.timestamp());
    let issuer_cn = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    facts.issuer = Some(issuer_cn.unwrap_or_else(|| cert.issuer().to_string()));
    facts.subject = Some(cert.subject().to_string());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => facts.sans.push((*dns).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        facts.sans.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    facts
}

/// `TLSv1.3`, the spelling openssl and most dashboards use.
fn version_name(version: rustls::ProtocolVersion) -> String {
    match version {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
        other => format!("{other:?}"),
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_offers_every_suite_of_ring_with_aes_128_gcm_first() {
        let ours = provider();
        let ring = rustls::crypto::ring::default_provider();
        assert_eq!(ours.cipher_suites.len(), ring.cipher_suites.len());
        for suite in &ring.cipher_suites {
            assert!(
                ours.cipher_suites.contains(suite),
                "{suite:?} is not offered"
            );
        }
        assert_eq!(
            ours.cipher_suites[0].suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        let first_sha384 = ours
            .cipher_suites
            .iter()
            .position(|suite| handshake_hash(*suite) == HashAlgorithm::SHA384)
            .expect("ring offers SHA-384 suites");
        assert!(
            ours.cipher_suites[first_sha384..]
                .iter()
                .all(|suite| handshake_hash(*suite) == HashAlgorithm::SHA384)
        );
    }

    #[test]
    fn the_probe_offers_every_signature_scheme_of_ring_with_sha_256_first() {
        let ours = verify_schemes();
        let mut ring = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes();
        assert!(ring.iter().any(|scheme| !signs_sha256(*scheme)));
        let sha256 = ours
            .iter()
            .take_while(|scheme| signs_sha256(**scheme))
            .count();
        assert_eq!(sha256, ring.iter().filter(|s| signs_sha256(**s)).count());
        assert_eq!(
            ours[..sha256].first(),
            Some(&SignatureScheme::ECDSA_NISTP256_SHA256)
        );
        assert!(ours[..sha256].contains(&SignatureScheme::RSA_PSS_SHA256));
        let mut sorted = ours.clone();
        sorted.sort_by_key(|scheme| u16::from(*scheme));
        ring.sort_by_key(|scheme| u16::from(*scheme));
        assert_eq!(sorted, ring, "the same schemes, only reordered");
    }
}
