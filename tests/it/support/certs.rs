//! A throw-away CA issuing server certificates with chosen validity.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

const DAY: Duration = Duration::from_secs(86_400);

/// Validity window of an issued certificate.
/// Why: certificate checks must be tested against expired and not-yet-valid
/// certificates from a trusted CA, not just against untrusted ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// not_before 1 day ago, not_after in 90 days.
    Current,
    /// not_before 30 days ago, not_after 2 days ago.
    Expired,
    /// not_before in 2 days, not_after in 90 days.
    NotYetValid,
    /// not_before 1 day ago, not_after `now + d` (for "expires soon" warnings).
    ExpiresIn(Duration),
}

/// A CA (key + self-signed cert) whose files live in `dir`.
/// Why: the prober must be pointed at a CA file it trusts, and servers must
/// present a chain that ends in it.
pub struct TestPki {
    /// Directory holding every PEM file written by this PKI.
    pub dir: PathBuf,
    /// The CA certificate (PEM), the file a client should trust.
    pub ca_pem: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    issued: AtomicUsize,
}

/// Sets not_before/not_after to now + the given signed seconds, without
/// naming the `time` crate (it is not a dev-dependency).
fn set_window(params: &mut CertificateParams, not_before: i64, not_after: i64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let abs = |delta: i64| epoch + Duration::from_secs(now.checked_add_signed(delta).unwrap());
    params.not_before = abs(not_before);
    params.not_after = abs(not_after);
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).expect("duration fits i64")
}

fn write(path: &Path, data: &str) -> PathBuf {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_path_buf()
}

impl TestPki {
    /// Creates a CA valid from yesterday for 10 years and writes `ca.pem` in `dir`.
    pub fn new(dir: impl AsRef<Path>) -> TestPki {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "mailprobe test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_window(&mut params, -secs(DAY), secs(DAY * 3650));
        let key = KeyPair::generate().expect("generate CA key");
        let ca = CertifiedIssuer::self_signed(params, key).expect("self-sign CA");
        let ca_pem = write(&dir.join("ca.pem"), &ca.pem());
        TestPki {
            dir,
            ca_pem,
            ca,
            issued: AtomicUsize::new(0),
        }
    }

    /// Issues a server certificate (CN `name`, DNS or IP SANs `sans`) signed by
    /// the CA. Returns `(cert_path, key_path)`; the cert file holds the leaf
    /// followed by the CA (full chain), so servers present the whole chain.
    pub fn issue(&self, name: &str, sans: &[&str], validity: Validity) -> (PathBuf, PathBuf) {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("valid SANs");
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        match validity {
            Validity::Current => set_window(&mut params, -secs(DAY), secs(DAY * 90)),
            Validity::Expired => set_window(&mut params, -secs(DAY * 30), -secs(DAY * 2)),
            Validity::NotYetValid => set_window(&mut params, secs(DAY * 2), secs(DAY * 90)),
            Validity::ExpiresIn(d) => set_window(&mut params, -secs(DAY), secs(d)),
        }
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("sign leaf");
        let base = self.file_base(name);
        let cert_path = write(&base.with_extension("crt"), &(cert.pem() + &self.ca.pem()));
        let key_path = write(&base.with_extension("key"), &key.serialize_pem());
        (cert_path, key_path)
    }

    /// Issues a self-signed certificate NOT from this CA, for "untrusted
    /// certificate" cases. Returns `(cert_path, key_path)`.
    pub fn self_signed(&self, name: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("valid SANs");
        params.distinguished_name.push(DnType::CommonName, name);
        set_window(&mut params, -secs(DAY), secs(DAY * 90));
        let key = KeyPair::generate().expect("generate key");
        let cert = params.self_signed(&key).expect("self-sign");
        let base = self.file_base(name);
        let cert_path = write(&base.with_extension("crt"), &cert.pem());
        let key_path = write(&base.with_extension("key"), &key.serialize_pem());
        (cert_path, key_path)
    }

    /// `<dir>/<n>-<name>`: unique per call, so re-issuing a name never
    /// overwrites a file a running server still uses.
    fn file_base(&self, name: &str) -> PathBuf {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{n}-{safe}.pem"))
    }
}

/// A TLS acceptor serving the full-chain PEM `cert` with its `key` (from
/// [`TestPki::issue`]), for the in-process servers.
pub fn acceptor(cert: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("cert file")
        .collect::<Result<_, _>>()
        .expect("certs");
    let key = PrivateKeyDer::from_pem_file(key).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}
