//! TLS for `sslmode` with rustls: the client configuration libpq would use (which chain and
//! name checks each mode makes, the client certificate when its file exists), the PEM files
//! it reads, and the two certificate verifiers libpq has and webpki lacks.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::conn::error::ConnError;
use crate::conn::settings::{ConnSettings, SslMode};

impl ConnSettings {
    /// The rustls client for TCP hosts, built with the ring provider explicitly (no process
    /// default is assumed).
    pub(super) fn tls_connector(
        &self,
    ) -> Result<tokio_postgres_rustls::MakeRustlsConnect, ConnError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let root_file = self.sslrootcert.as_deref().filter(|f| f.exists());
        let verifier: Arc<dyn ServerCertVerifier> = match self.sslmode {
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let file = self.sslrootcert.as_deref().ok_or(ConnError::NoRootCert {
                    sslmode: self.sslmode,
                })?;
                let roots = load_roots(file)?;
                let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider.clone(),
                )
                .build()
                .map_err(|e| ConnError::TlsSetup(e.to_string()))?;
                if self.sslmode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(ChainOnlyVerifier(webpki))
                }
            }
            // libpq: with a root certificate file present, even require/prefer verify the
            // chain (but not the host name).
            _ => match root_file {
                Some(file) => {
                    let roots = load_roots(file)?;
                    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider.clone(),
                    )
                    .build()
                    .map_err(|e| ConnError::TlsSetup(e.to_string()))?;
                    Arc::new(ChainOnlyVerifier(webpki))
                }
                None => Arc::new(AnyCertVerifier(provider.clone())),
            },
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConnError::TlsSetup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        // libpq uses the client certificate when its file exists, and ignores it otherwise.
        let config = match self.sslcert.as_deref().filter(|f| f.exists()) {
            Some(cert_file) => {
                let certs = load_certs(cert_file, "client certificate")?;
                let key_file = self.sslkey.as_deref().ok_or_else(|| ConnError::TlsFile {
                    what: "client certificate",
                    file: cert_file.to_path_buf(),
                    reason: "no sslkey given for it".to_owned(),
                })?;
                let key = load_key(key_file)?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| ConnError::TlsFile {
                        what: "client certificate",
                        file: cert_file.to_path_buf(),
                        reason: format!("{e} (with key {})", key_file.display()),
                    })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }
}

fn load_certs(file: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, ConnError> {
    let tls_file = |reason: String| ConnError::TlsFile {
        what,
        file: file.to_path_buf(),
        reason,
    };
    let handle = fs::File::open(file).map_err(|e| {
        tls_file(if e.kind() == io::ErrorKind::NotFound {
            "it does not exist".to_owned()
        } else {
            e.to_string()
        })
    })?;
    let certs = rustls_pemfile::certs(&mut io::BufReader::new(handle))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_file(e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_file("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

fn load_roots(file: &Path) -> Result<RootCertStore, ConnError> {
    let certs = load_certs(file, "root certificate")?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert).map_err(|e| ConnError::TlsFile {
            what: "root certificate",
            file: file.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// Loads a client key, refusing one others can read (libpq: 0600, or 0640 when root owns it).
fn load_key(file: &Path) -> Result<PrivateKeyDer<'static>, ConnError> {
    let key_file = |reason: String| ConnError::TlsFile {
        what: "client key",
        file: file.to_path_buf(),
        reason,
    };
    let meta = fs::metadata(file).map_err(|e| key_file(e.to_string()))?;
    if !meta.is_file() {
        return Err(key_file("not a regular file".to_owned()));
    }
    let allowed = if meta.uid() == 0 { 0o037 } else { 0o077 };
    if meta.mode() & allowed != 0 {
        return Err(key_file(
            "has group or world access; permissions should be u=rw (0600) or less".to_owned(),
        ));
    }
    let handle = fs::File::open(file).map_err(|e| key_file(e.to_string()))?;
    rustls_pemfile::private_key(&mut io::BufReader::new(handle))
        .map_err(|e| key_file(e.to_string()))?
        .ok_or_else(|| key_file("no PEM private key in it".to_owned()))
}

/// `sslmode=require` without a root certificate: encryption only. Handshake signatures are
/// still verified, so the peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct AnyCertVerifier(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnlyVerifier(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnlyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a name error means the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use crate::conn::testing::{resolve, test_env};
    use crate::exit::{ExitStatus, Failure as _};

    #[tokio::test]
    async fn verify_full_without_root_certificate_names_the_file() {
        let home = tempfile::tempdir().unwrap();
        let env = test_env(home.path(), &[]);
        let settings = resolve("host=127.0.0.1 port=1 sslmode=verify-full", &env).unwrap();
        let Err(error) = settings.connect().await else {
            panic!("connected without a root certificate");
        };
        assert!(
            error.to_string().contains(".postgresql/root.crt"),
            "{error}"
        );
        assert_eq!(error.exit_status(), ExitStatus::Usage);
        assert!(error.hint().unwrap().contains("sslrootcert"));
    }
}
