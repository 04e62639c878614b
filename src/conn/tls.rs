//! TLS for `sslmode` with rustls: the client configuration libpq would use (which chain and
//! name checks each mode makes, the client certificate when its file exists), the PEM files
//! it reads, and the two certificate verifiers libpq has and webpki lacks.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::conn::error::ConnError;
use crate::conn::settings::{ConnSettings, SslMode};

impl ConnSettings {
    /// The rustls client for TCP hosts, built with the ring provider explicitly (no process
    /// default is assumed).
    pub(crate) fn tls_connector(
        &self,
    ) -> Result<tokio_postgres_rustls::MakeRustlsConnect, ConnError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let root_file = self.sslrootcert.as_deref().filter(|f| f.exists());
        let verifier: Arc<dyn ServerCertVerifier> = match self.sslmode {
            SslMode::VerifyCa | SslMode::VerifyFull => {
                let file = self.sslrootcert.as_deref().ok_or(ConnError::NoRootCert {
                    sslmode: self.sslmode,
                })?;
                let webpki = webpki_verifier(file, &provider)?;
                if self.sslmode == SslMode::VerifyFull {
                    webpki
                } else {
                    Arc::new(LibpqVerifier {
                        provider: provider.clone(),
                        chain: Some(webpki),
                    })
                }
            }
            // libpq: with a root certificate file present, even require/prefer verify the
            // chain (but not the host name).
            _ => Arc::new(LibpqVerifier {
                provider: provider.clone(),
                chain: root_file
                    .map(|file| webpki_verifier(file, &provider))
                    .transpose()?,
            }),
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
    let certs = CertificateDer::pem_reader_iter(handle)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_file(e.to_string()))?;
    if certs.is_empty() {
        return Err(tls_file("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

/// rustls' standard verifier (chain and host name) over the root certificates in `file`.
fn webpki_verifier(
    file: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, ConnError> {
    let roots = load_roots(file)?;
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ConnError::TlsSetup(e.to_string()))
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
    PrivateKeyDer::from_pem_reader(handle).map_err(|e| match e {
        pem::Error::NoItemsFound => key_file("no PEM private key in it".to_owned()),
        other => key_file(other.to_string()),
    })
}

/// The certificate checks libpq makes and rustls' own verifier does not. Without `chain`:
/// `sslmode=require` (or `prefer`) with no root certificate, encryption only. With it: the chain
/// must lead to a trusted root, but the host name is not checked (`verify-ca`, or
/// `require`/`prefer` with a root certificate file). Handshake signatures are verified either
/// way, so the peer must hold the key of the certificate it shows.
#[derive(Debug)]
struct LibpqVerifier {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        // webpki checks the chain before the name, so a name error means the chain is good.
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    // The same checks as WebPkiServerVerifier's, with the same provider's algorithms.
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::testing::{resolve, test_env};
    use crate::exit::{ExitStatus, Failure as _};
    use std::path::PathBuf;
    use std::process::Command;

    /// Runs `openssl` in `dir` with `args` split at spaces (no shell); the tests need it to
    /// make certificates.
    fn openssl(dir: &Path, args: &str) {
        let output = Command::new("openssl")
            .args(args.split(' '))
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("openssl is needed to make test certificates: {e}"));
        assert!(
            output.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    const EC_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

    /// A CA named `name` in `dir`: returns its certificate file.
    fn make_ca(dir: &Path, name: &str) -> PathBuf {
        openssl(
            dir,
            &format!(
                "req -x509 {EC_KEY} -days 2 -subj /CN={name} -keyout {name}.key -out {name}.crt \
                 -addext basicConstraints=critical,CA:TRUE \
                 -addext keyUsage=critical,keyCertSign,cRLSign"
            ),
        );
        dir.join(format!("{name}.crt"))
    }

    /// A server certificate for `host`, signed by the CA `ca` made by [`make_ca`].
    fn make_server_cert(dir: &Path, ca: &str, host: &str) -> CertificateDer<'static> {
        let extensions = format!(
            "subjectAltName=DNS:{host}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
        );
        fs::write(dir.join("server.ext"), extensions).unwrap();
        openssl(
            dir,
            &format!("req -new {EC_KEY} -subj /CN={host} -keyout server.key -out server.csr"),
        );
        openssl(
            dir,
            &format!(
                "x509 -req -in server.csr -CA {ca}.crt -CAkey {ca}.key -CAcreateserial -days 2 \
                 -extfile server.ext -out server.crt"
            ),
        );
        load_certs(&dir.join("server.crt"), "server certificate")
            .unwrap()
            .remove(0)
    }

    #[test]
    fn verifiers_check_what_each_sslmode_asks() {
        let dir = tempfile::tempdir().unwrap();
        let root = make_ca(dir.path(), "root");
        let stranger = make_ca(dir.path(), "stranger");
        let server = make_server_cert(dir.path(), "root", "db.example");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let accepts = |verifier: &dyn ServerCertVerifier, host: &str| {
            let name = ServerName::try_from(host.to_owned()).unwrap();
            verifier
                .verify_server_cert(&server, &[], &name, &[], UnixTime::now())
                .is_ok()
        };
        // verify-full: chain and name.
        let full = webpki_verifier(&root, &provider).unwrap();
        assert!(accepts(&*full, "db.example"));
        assert!(!accepts(&*full, "other.example"));
        // verify-ca (or require with a root file): the chain, not the name.
        let chain_only = LibpqVerifier {
            provider: provider.clone(),
            chain: Some(full.clone()),
        };
        assert!(accepts(&chain_only, "db.example"));
        assert!(accepts(&chain_only, "other.example"));
        let wrong_root = LibpqVerifier {
            provider: provider.clone(),
            chain: Some(webpki_verifier(&stranger, &provider).unwrap()),
        };
        assert!(!accepts(&wrong_root, "db.example"));
        // require without a root file: any certificate.
        let any = LibpqVerifier {
            provider: provider.clone(),
            chain: None,
        };
        assert!(accepts(&any, "other.example"));
        // Handshake signatures: the same algorithms as rustls' own verifier.
        assert_eq!(
            any.supported_verify_schemes(),
            full.supported_verify_schemes()
        );
        assert!(!any.supported_verify_schemes().is_empty());
    }

    #[test]
    fn pem_files_give_their_certificates_and_key() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let root = make_ca(dir.path(), "root");
        assert_eq!(load_certs(&root, "root certificate").unwrap().len(), 1);
        let key = dir.path().join("root.key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load_key(&key), Ok(PrivateKeyDer::Pkcs8(_))));
        // The certificate file holds no key, the key file no certificate.
        let no_key = dir.path().join("root-copy.crt");
        fs::copy(&root, &no_key).unwrap();
        fs::set_permissions(&no_key, fs::Permissions::from_mode(0o600)).unwrap();
        let error = load_key(&no_key).unwrap_err().to_string();
        assert!(error.contains("no PEM private key"), "{error}");
        let error = load_certs(&key, "root certificate")
            .unwrap_err()
            .to_string();
        assert!(error.contains("no PEM certificate"), "{error}");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_key(&key).unwrap_err().to_string();
        assert!(error.contains("group or world access"), "{error}");
    }

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
