//! Certificate verification: the trust anchors, a verifier per set of anchors that
//! remembers the chains it has already verified, and the per-handshake wrapper that
//! keeps what the server presented.
//!
//! Re-verifying a chain that verified a minute ago is the costliest step of a probe
//! after the key exchange (the RSA signatures of the chain; `docs/performance.md`), and
//! its answer can only change with time: the same certificates, the same name and the
//! same roots give the same path. So a [`ChainVerifier`] keeps, per chain and name, that
//! it verified and until when the answer holds: the earliest notAfter of the presented
//! certificates, and at most [`VERIFIED_FOR`]. Everything else is checked on every
//! handshake: the server still proves it holds the certificate's key (the TLS 1.3
//! CertificateVerify or TLS 1.2 ServerKeyExchange signature), any other chain or name
//! is verified in full, and failures are never remembered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ring::digest::{Context, SHA256};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{certificate_facts, provider, verify_schemes};
use crate::probe::TlsFacts;

/// The longest a verified chain is taken as verified without checking it again.
pub const VERIFIED_FOR: std::time::Duration = std::time::Duration::from_secs(3600);

/// The most chains one verifier remembers (about 60 bytes each): far more than the
/// distinct servers of any configuration, and a bound should a server present a new
/// chain on every connection.
const MAX_REMEMBERED: usize = 4096;

/// The platform's trusted roots; Mozilla's bundled roots when the platform has none
/// (a minimal container image without `ca-certificates`).
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::warn!(
            errors = native.errors.len(),
            "no system CA certificates found; using the bundled Mozilla roots"
        );
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

/// Builds the verifier for a target: `base` roots plus the target's extra roots.
///
/// # Errors
///
/// A message when the roots cannot form a verifier (no usable root at all).
pub fn verifier(
    base: &RootCertStore,
    extra: &[CertificateDer<'static>],
) -> Result<Arc<ChainVerifier>, String> {
    let mut roots = base.clone();
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|error| format!("a CA certificate cannot be used as a root: {error}"))?;
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|error| format!("cannot build the certificate verifier: {error}"))?;
    Ok(Arc::new(ChainVerifier {
        webpki,
        verified: Mutex::new(HashMap::new()),
        described: Mutex::new(HashMap::new()),
    }))
}

/// The identity of a verification: the presented certificates and the name asked for.
type ChainKey = [u8; 32];

/// rustls' WebPKI verifier for one set of trust anchors, remembering the chains it
/// verified (see the module documentation).
#[derive(Debug)]
pub struct ChainVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// Per chain and name: when it was verified and until when that holds (Unix
    /// seconds).
    verified: Mutex<HashMap<ChainKey, (u64, u64)>>,
    /// Per chain and name: the facts read from the chain (whether or not it verified).
    /// They depend on the certificates' bytes alone, so they never go stale; reading
    /// them anew was 2.5 % of a probe's CPU (the leaf parsed, its names formatted).
    described: Mutex<HashMap<ChainKey, Arc<TlsFacts>>>,
}

impl ChainVerifier {
    /// Whether `key` was verified at or before `now` and still holds at `now`.
    fn remembers(&self, key: &ChainKey, now: u64) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        // A clock that went backwards verifies again.
        verified
            .get(key)
            .is_some_and(|&(at, until)| at <= now && now < until)
    }

    /// The facts of the chain `key` names, read once.
    fn describe(
        &self,
        key: &ChainKey,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Arc<TlsFacts> {
        let known = self
            .described
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned();
        if let Some(facts) = known {
            return facts;
        }
        // Read outside the lock: concurrent first handshakes may each read it once.
        let facts = Arc::new(certificate_facts(end_entity, 1 + intermediates.len()));
        let mut described = self.described.lock().unwrap_or_else(|p| p.into_inner());
        if described.len() >= MAX_REMEMBERED {
            described.clear();
        }
        described.insert(*key, Arc::clone(&facts));
        facts
    }

    /// Verifies the chain `key` names: from memory when it verified recently, else in
    /// full (remembering a success).
    fn verify(
        &self,
        key: ChainKey,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seconds = now.as_secs();
        if self.remembers(&key, seconds) {
            return Ok(ServerCertVerified::assertion());
        }
        let verified = self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Some(not_after) = earliest_not_after(end_entity, intermediates) {
            let until = not_after.min(seconds.saturating_add(VERIFIED_FOR.as_secs()));
            self.remember(key, seconds, until);
        }
        Ok(verified)
    }

    fn remember(&self, key: ChainKey, now: u64, until: u64) {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= MAX_REMEMBERED {
            verified.retain(|_, &mut (at, until)| at <= now && now < until);
            if verified.len() >= MAX_REMEMBERED {
                verified.clear();
            }
        }
        verified.insert(key, (now, until));
    }
}

/// SHA-256 over the name and every certificate, each length-prefixed.
fn chain_key(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    server_name: &ServerName<'_>,
) -> ChainKey {
    let mut digest = Context::new(&SHA256);
    let name = server_name.to_str();
    digest.update(&(name.len() as u64).to_be_bytes());
    digest.update(name.as_bytes());
    for cert in std::iter::once(end_entity).chain(intermediates) {
        digest.update(&(cert.len() as u64).to_be_bytes());
        digest.update(cert);
    }
    let mut key = [0; 32];
    key.copy_from_slice(digest.finish().as_ref());
    key
}

/// The earliest notAfter of the presented certificates (Unix seconds); `None` when one
/// cannot be read (then nothing is remembered).
fn earliest_not_after(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Option<u64> {
    std::iter::once(end_entity)
        .chain(intermediates)
        .map(|cert| {
            let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
            u64::try_from(parsed.validity().not_after.timestamp()).ok()
        })
        .try_fold(u64::MAX, |earliest, not_after| {
            Some(earliest.min(not_after?))
        })
}

impl ServerCertVerifier for ChainVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = chain_key(end_entity, intermediates, server_name);
        self.verify(
            key,
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // The verifier is built on `provider()`, so these are its schemes, reordered.
        verify_schemes()
    }
}

/// The template's placeholder verifier, replaced before every handshake; should that
/// ever not happen, it fails closed.
#[derive(Debug)]
pub(super) struct RefuseAll;

impl ServerCertVerifier for RefuseAll {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::General("no certificate verifier set".into()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("no certificate verifier set".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("no certificate verifier set".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        verify_schemes()
    }
}

/// Delegates every decision to the target's [`ChainVerifier`], but first keeps the
/// facts of the chain the server presented. One per handshake, so concurrent probes
/// never mix chains.
#[derive(Debug)]
pub(super) struct RecordingVerifier {
    pub(super) inner: Arc<ChainVerifier>,
    pub(super) described: Mutex<Option<Arc<TlsFacts>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = chain_key(end_entity, intermediates, server_name);
        let facts = self.inner.describe(&key, end_entity, intermediates);
        // A poisoned lock only means another thread panicked mid-write; the data is a
        // plain Option we overwrite, so taking it over is sound.
        *self.described.lock().unwrap_or_else(|p| p.into_inner()) = Some(facts);
        self.inner.verify(
            key,
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> ChainKey {
        [byte; 32]
    }

    fn empty_verifier() -> ChainVerifier {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
        ChainVerifier {
            webpki,
            verified: Mutex::new(HashMap::new()),
            described: Mutex::new(HashMap::new()),
        }
    }

    #[test]
    fn a_chain_is_described_once_and_its_facts_come_from_the_leaf() {
        let verifier = empty_verifier();
        let key_pair = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![
            "mail.example.com".to_owned(),
            "192.0.2.7".to_owned(),
        ])
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mail.example.com");
        let leaf = params.self_signed(&key_pair).unwrap().der().clone();
        let other = CertificateDer::from(vec![0x30, 0x00]);
        let first = verifier.describe(&key(1), &leaf, std::slice::from_ref(&other));
        assert_eq!(first.chain_len, 2);
        assert_eq!(first.sans, ["mail.example.com", "192.0.2.7"]);
        assert_eq!(first.issuer.as_deref(), Some("mail.example.com"));
        assert!(first.not_after.is_some() && first.version.is_none());
        let again = verifier.describe(&key(1), &leaf, std::slice::from_ref(&other));
        assert!(Arc::ptr_eq(&first, &again), "read once");
        let unreadable = verifier.describe(&key(2), &other, &[]);
        assert_eq!(unreadable.chain_len, 1);
        assert_eq!(unreadable.not_after, None);
    }

    #[test]
    fn the_facts_memory_is_bounded() {
        let verifier = empty_verifier();
        let cert = CertificateDer::from(vec![0x30, 0x00]);
        for i in 0..(MAX_REMEMBERED + 10) {
            let mut k = [0; 32];
            k[..8].copy_from_slice(&(i as u64).to_be_bytes());
            verifier.describe(&k, &cert, &[]);
        }
        assert!(verifier.described.lock().unwrap().len() <= MAX_REMEMBERED);
    }

    #[test]
    fn a_remembered_chain_holds_only_inside_its_window() {
        let verifier = empty_verifier();
        verifier.remember(key(1), 1_000, 2_000);
        assert!(verifier.remembers(&key(1), 1_000));
        assert!(verifier.remembers(&key(1), 1_999));
        assert!(!verifier.remembers(&key(1), 2_000), "expired");
        assert!(!verifier.remembers(&key(1), 999), "the clock went back");
        assert!(!verifier.remembers(&key(2), 1_500), "another chain or name");
    }

    #[test]
    fn the_memory_is_bounded() {
        let verifier = empty_verifier();
        for i in 0..(MAX_REMEMBERED + 10) {
            let mut k = [0; 32];
            k[..8].copy_from_slice(&(i as u64).to_be_bytes());
            verifier.remember(k, 1_000, 2_000);
        }
        assert!(verifier.verified.lock().unwrap().len() <= MAX_REMEMBERED);
    }

    #[test]
    fn the_key_depends_on_the_name_and_every_certificate() {
        let a = CertificateDer::from(vec![1, 2, 3]);
        let b = CertificateDer::from(vec![4, 5]);
        let name = ServerName::try_from("mail.example.com").unwrap();
        let other = ServerName::try_from("mx.example.com").unwrap();
        let base = chain_key(&a, std::slice::from_ref(&b), &name);
        assert_eq!(base, chain_key(&a, std::slice::from_ref(&b), &name));
        assert_ne!(base, chain_key(&a, &[], &name));
        assert_ne!(base, chain_key(&a, std::slice::from_ref(&b), &other));
        assert_ne!(base, chain_key(&b, std::slice::from_ref(&a), &name));
    }
}
