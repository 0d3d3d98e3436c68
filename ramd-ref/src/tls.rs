//! TLS of the agent API (and of the Raft RPCs on the same port): loading the server's
//! certificate and key, loading a CA bundle to trust, serving a router over plain HTTP or
//! HTTPS, and generating a throw-away CA plus server certificate for playgrounds and tests.
//!
//! rustls with the `ring` provider throughout; the provider is passed explicitly, so no
//! process-wide default has to be installed.
//!
//! ```no_run
//! # async fn serve(app: axum::Router) -> anyhow::Result<()> {
//! use std::path::Path;
//! let tls = ramd_ref::tls::ApiTls::load(
//!     Path::new("/etc/rale/api.crt"),
//!     Path::new("/etc/rale/api.key"),
//! )?;
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:8008").await?;
//! let handle = tls.clone();
//! tokio::spawn(ramd_ref::tls::serve(listener, app, Some(tls)));
//! // After the certificate was renewed on disk (ramd does this on SIGHUP):
//! handle.reload()?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::Router;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The crypto provider of every TLS configuration built here.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the PEM certificate chain at `cert` (leaf first) and the PEM private key at
/// `key` (PKCS#8, PKCS#1 or SEC1) into a server configuration offering HTTP/2 and
/// HTTP/1.1. Every failure names the file and what is wrong with it.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let chain = read_certificates(cert, "api.tls_cert")?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        anyhow::anyhow!(
            "api.tls_key {}: cannot read a PEM private key (PKCS#8, PKCS#1 or SEC1): {}",
            key.display(),
            pem_error(&e)
        )
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
            anyhow::anyhow!(
                "api.tls_cert {} and api.tls_key {} are not usable together: {e}",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The API's TLS configuration and the files it came from: a served listener picks up
/// a renewed certificate with [`ApiTls::reload`], without a restart; connections already
/// open keep the certificate they were established with.
#[derive(Clone)]
pub struct ApiTls {
    live: axum_server::tls_rustls::RustlsConfig,
    cert: PathBuf,
    key: PathBuf,
}

impl std::fmt::Debug for ApiTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ApiTls {
    /// Loads the certificate chain at `cert` and the key at `key` (see [`server_config`]).
    pub fn load(cert: &Path, key: &Path) -> Result<Self> {
        let config = server_config(cert, key)?;
        Ok(Self {
            live: axum_server::tls_rustls::RustlsConfig::from_config(config),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Reads both files again and serves new connections with them. On any error the
    /// configuration in use stays, and the error names the file.
    pub fn reload(&self) -> Result<()> {
        let config = server_config(&self.cert, &self.key)?;
        self.live.reload_from_config(config);
        Ok(())
    }

    /// The certificate and key files.
    pub fn files(&self) -> (&Path, &Path) {
        (&self.cert, &self.key)
    }
}

/// The TLS an `[api]` section asks for: `None` without `tls_cert` / `tls_key`. Also
/// checks that `tls_ca`, when set, is a readable CA bundle, so that every TLS file
/// problem stops `ramd` at startup with the file's name.
pub fn from_api_config(api: &crate::config::ApiConfig) -> Result<Option<ApiTls>> {
    api.validate_tls()?;
    if let Some(ca) = &api.tls_ca {
        read_ca_bundle(ca, "api.tls_ca")?;
    }
    match (&api.tls_cert, &api.tls_key) {
        (Some(cert), Some(key)) => ApiTls::load(cert, key).map(Some),
        _ => Ok(None),
    }
}

/// Reads a PEM bundle of CA certificates to trust (`what` names the setting in errors)
/// and checks that it holds at least one certificate; returns the file's bytes.
pub fn read_ca_bundle(path: &Path, what: &str) -> Result<Vec<u8>> {
    read_certificates(path, what)?;
    std::fs::read(path).with_context(|| format!("{what} {}: cannot read", path.display()))
}

fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let text = std::fs::read(path)
        .with_context(|| format!("{what} {}: cannot read the file", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "{what} {}: not a PEM certificate file: {}",
                path.display(),
                pem_error(&e)
            )
        })?;
    if certs.is_empty() {
        bail!(
            "{what} {}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certs)
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no matching PEM section found".into(),
        other => format!("{other:?}"),
    }
}

/// Serves `app` on `listener` until the task is dropped: HTTPS when `tls` is given,
/// plain HTTP otherwise. Client addresses reach the router as
/// `ConnectInfo<SocketAddr>` either way (the API's network allow-list needs them).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<ApiTls>,
) -> std::io::Result<()> {
    let svc = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => axum::serve(listener, svc).await,
        Some(tls) => {
            let std_listener = listener.into_std()?;
            axum_server::tls_rustls::from_tcp_rustls(std_listener, tls.live)
                .serve(svc)
                .await
        }
    }
}

/// Files of a generated certificate authority and one server certificate signed by it.
#[derive(Clone, Debug)]
pub struct GeneratedTls {
    /// The CA certificate (PEM): what clients and peers trust (`api.tls_ca`,
    /// `ramctrl --ca-cert`).
    pub ca_cert: PathBuf,
    /// The server certificate (PEM) for `api.tls_cert`.
    pub cert: PathBuf,
    /// The server's private key (PEM, PKCS#8) for `api.tls_key`.
    pub key: PathBuf,
}

/// Generates a fresh CA and a server certificate for `hosts` (DNS names or IP
/// addresses) signed by it, and writes `ca.crt`, `server.crt` and `server.key` (mode
/// 0600) into `dir`. For playgrounds and tests: the CA key is not kept.
pub fn generate_self_signed(dir: &Path, hosts: &[&str]) -> Result<GeneratedTls> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "RALE generated CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).context("signing the CA")?;
    let key = KeyPair::generate().context("generating the server key")?;
    let names: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    let mut params = CertificateParams::new(names).context("server certificate parameters")?;
    params
        .distinguished_name
        .push(DnType::CommonName, hosts.first().copied().unwrap_or("ramd"));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .context("signing the server certificate")?;
    let out = GeneratedTls {
        ca_cert: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
    };
    std::fs::write(&out.ca_cert, ca_cert.pem())
        .with_context(|| format!("writing {}", out.ca_cert.display()))?;
    std::fs::write(&out.cert, cert.pem())
        .with_context(|| format!("writing {}", out.cert.display()))?;
    write_private(&out.key, key.serialize_pem().as_bytes())?;
    Ok(out)
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_load() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate_self_signed(dir.path(), &["127.0.0.1", "localhost"]).expect("pki");
        assert!(server_config(&files.cert, &files.key).is_ok());
        let ca = read_ca_bundle(&files.ca_cert, "api.tls_ca").expect("ca");
        assert!(String::from_utf8_lossy(&ca).contains("BEGIN CERTIFICATE"));
    }

    #[test]
    fn bad_files_are_named_in_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = generate_self_signed(dir.path(), &["127.0.0.1"]).expect("pki");
        let missing = dir.path().join("nope.crt");
        let err = |r: Result<Arc<ServerConfig>>| match r {
            Ok(_) => panic!("must fail"),
            Err(e) => format!("{e:#}"),
        };

        let e = err(server_config(&missing, &files.key));
        assert!(e.contains("api.tls_cert") && e.contains("nope.crt"), "{e}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem at all").expect("write");
        let e = err(server_config(&garbage, &files.key));
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let e = err(server_config(&files.cert, &garbage));
        assert!(
            e.contains("api.tls_key") && e.contains("garbage.pem"),
            "{e}"
        );

        // A key that does not belong to the certificate.
        let other = tempfile::tempdir().expect("temp dir");
        let other = generate_self_signed(other.path(), &["127.0.0.1"]).expect("pki");
        let e = err(server_config(&files.cert, &other.key));
        assert!(e.contains("not usable together"), "{e}");

        let e = format!(
            "{:#}",
            read_ca_bundle(&garbage, "api.tls_ca").expect_err("must fail")
        );
        assert!(e.contains("api.tls_ca"), "{e}");
    }
}
