//! A self-signed certificate generated at test time (rcgen), for the TLS
//! port's tests.

use std::path::PathBuf;

use sluice::tls::{TlsClientConfig, TlsFiles};

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM
/// files in a temporary directory.
pub struct Cert {
    pub dir: tempfile::TempDir,
    der: rustls_pki_types::CertificateDer<'static>,
}

impl Cert {
    pub fn new() -> Cert {
        let ck = rcgen::generate_simple_self_signed(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
        ])
        .expect("generate a certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cert.pem"), ck.cert.pem()).expect("write cert");
        std::fs::write(dir.path().join("key.pem"), ck.signing_key.serialize_pem())
            .expect("write key");
        Cert {
            dir,
            der: ck.cert.der().clone(),
        }
    }

    /// `serve`'s flags for this certificate, the TLS port on 127.0.0.1:0.
    pub fn serve_args(&self) -> Vec<String> {
        let path = |p: PathBuf| p.to_str().expect("utf-8 path").to_owned();
        vec![
            "--tls-cert".into(),
            path(self.cert()),
            "--tls-key".into(),
            path(self.key()),
            "--tls-addr".into(),
            "127.0.0.1:0".into(),
        ]
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    pub fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.cert(),
            key: self.key(),
        }
    }

    pub fn client(&self) -> TlsClientConfig {
        TlsClientConfig::trusting([self.der.clone()]).expect("client config")
    }
}
