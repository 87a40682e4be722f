//! TLS set-up, both sides: the server's [`TlsAcceptor`] from `--tls-cert` /
//! `--tls-key` PEM files, and the client's [`TlsClientConfig`] (trust a CA
//! or certificate PEM file, or given certificates). rustls with the `ring`
//! provider; TLS 1.2 and 1.3. Nothing here reads or writes the protocol:
//! `connection` and `client` wrap the stream and speak it as over TCP.
//!
//! **The wrong port, either way, is named.** [`accept`] tells a client
//! that speaks plain text on the TLS port (or waits in silence for a
//! greeting, as sluice's own client does) from a TLS one by its first
//! byte, and hands it back for the server to answer in plain text. A TLS
//! client on the plain port gets that port's plain-text `ERR`, which
//! rustls reads as a broken record: [`TlsClientConfig::connect`] says
//! that the server answered in plain text.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

pub(crate) use tokio_rustls::{TlsAcceptor, TlsConnector};

/// The TLS port when `--tls-addr` is not given: the `--addr` host with it.
pub(crate) const DEFAULT_TLS_PORT: u16 = 5681;
/// The longest a TLS handshake may take (a client that connects to the TLS
/// port and sends nothing is closed then, or after `--frame-timeout` if
/// that is shorter).
pub(crate) const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a client on the TLS port may stay silent before it is taken
/// for a plain-text one waiting for a greeting: a TLS client sends its
/// ClientHello as soon as it is connected.
pub(crate) const FIRST_BYTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// The first byte of a TLS record that opens a handshake (a ClientHello).
const HANDSHAKE_RECORD: u8 = 0x16;

/// Why a connection on the TLS port has no TLS stream.
#[derive(Debug)]
pub(crate) enum NotTls {
    /// The client speaks plain text (its first byte opens no TLS
    /// handshake), or said nothing within [`FIRST_BYTE_TIMEOUT`]: its
    /// stream, to tell it so in plain text.
    PlainText(TcpStream),
    /// The handshake failed, or did not finish within its bound.
    Failed(std::io::Error),
}

/// The server side of a TLS handshake on `stream`, within `bound` (see
/// the module docs for a client that is not speaking TLS).
pub(crate) async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    bound: std::time::Duration,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, NotTls> {
    let deadline = tokio::time::Instant::now() + bound;
    let mut first = [0u8; 1];
    match tokio::time::timeout(FIRST_BYTE_TIMEOUT.min(bound), stream.peek(&mut first)).await {
        Err(_) => return Err(NotTls::PlainText(stream)),
        Ok(Ok(1)) if first[0] != HANDSHAKE_RECORD => return Err(NotTls::PlainText(stream)),
        Ok(Err(e)) => return Err(NotTls::Failed(e)),
        // A ClientHello, or the end of the stream (the handshake fails).
        Ok(Ok(_)) => {}
    }
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(done) => done.map_err(NotTls::Failed),
        Err(_) => Err(NotTls::Failed(std::io::ErrorKind::TimedOut.into())),
    }
}

/// A TLS set-up that could not be built; names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file missing, unreadable, or without what it should hold.
    #[error("{}: {what}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// rustls refused the certificate or key (a key that does not match
    /// the certificate, an unsupported algorithm).
    #[error("{context}: {source}")]
    Rustls {
        /// What was being set up, with the file names.
        context: String,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// The certificate chain and private key files of `--tls-cert` / `--tls-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// ring, not aws-lc-rs (which needs cmake and a C toolchain to build).
/// rustls deprecates ring's provider because it has no post-quantum key
/// exchange; the classical suites it offers are the ones TLS 1.2/1.3
/// clients use today.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error, what: &str) -> TlsError {
    let what = match e {
        rustls::pki_types::pem::Error::Io(io) => format!("cannot read it: {io}"),
        rustls::pki_types::pem::Error::NoItemsFound => format!("no {what} in it (PEM expected)"),
        other => format!("not a valid PEM file: {other:?}"),
    };
    TlsError::File {
        path: path.to_path_buf(),
        what,
    }
}

/// Every certificate in the PEM file `path` (at least one).
pub(crate) fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(path, e, "certificate"))?;
    if certs.is_empty() {
        return Err(pem_error(
            path,
            rustls::pki_types::pem::Error::NoItemsFound,
            "certificate",
        ));
    }
    Ok(certs)
}

/// The first private key in the PEM file `path`.
pub(crate) fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error(path, e, "private key"))
}

/// The acceptor for `--tls-cert` / `--tls-key`: errors name the file.
pub fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let context = || {
        format!(
            "TLS certificate {} with key {}",
            files.cert.display(),
            files.key.display()
        )
    };
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|source| TlsError::Rustls {
            context: context(),
            source,
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What a client trusts, and the name it expects the server's certificate
/// to carry.
#[derive(Debug, Clone)]
pub struct TlsClientConfig {
    config: Arc<rustls::ClientConfig>,
}

impl TlsClientConfig {
    /// Trusts the certificates (a CA, or a self-signed server certificate)
    /// in the PEM file `ca`.
    pub fn from_ca_file(ca: &Path) -> Result<TlsClientConfig, TlsError> {
        let certs = load_certs(ca)?;
        TlsClientConfig::trusting(certs).map_err(|source| TlsError::Rustls {
            context: format!("trusting {}", ca.display()),
            source,
        })
    }

    /// Trusts `certs` (for tests: a certificate generated on the spot).
    pub fn trusting(
        certs: impl IntoIterator<Item = CertificateDer<'static>>,
    ) -> Result<TlsClientConfig, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for c in certs {
            roots.add(c)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClientConfig {
            config: Arc::new(config),
        })
    }

    /// The TLS handshake over `tcp`, checking the certificate against
    /// `server_name` (a DNS name or an IP address).
    pub(crate) async fn connect(
        &self,
        tcp: TcpStream,
        server_name: &str,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let name = ServerName::try_from(server_name.to_string()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("invalid TLS server name {server_name:?}"),
            )
        })?;
        TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
            .map_err(plain_text_answer)
    }
}

/// A handshake that failed on a record that is no TLS record: the server
/// answered in plain text (sluice's plain port answers a ClientHello with
/// `ERR BAD_FRAME this is a plain-text port, not TLS`). The error says so;
/// any other stays as it is.
fn plain_text_answer(e: std::io::Error) -> std::io::Error {
    let not_a_record = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidMessage(_)));
    if !not_a_record {
        return e;
    }
    std::io::Error::new(
        e.kind(),
        format!(
            "the server did not answer in TLS ({e}): this looks like a plain-text port; \
             connect without TLS, or to the TLS port"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_non_pem_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.pem");
        let e = load_certs(&missing).expect_err("missing");
        assert!(e.to_string().contains("nope.pem"), "{e}");
        assert!(e.to_string().contains("cannot read"), "{e}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello\n").expect("write");
        let e = load_key(&junk).expect_err("junk");
        assert!(e.to_string().contains("junk.pem"), "{e}");
        assert!(e.to_string().contains("no private key"), "{e}");
    }
}
