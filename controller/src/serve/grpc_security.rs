//! Who may open an ECDS stream: TLS with the controller's certificate, and the client
//! authenticated by a certificate from a configured CA (mTLS), by a bearer token in the
//! stream's initial metadata, or by both. Plaintext only when asked for by name.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{metadata::MetadataMap, Status};

use super::auth::Token;

/// The PEM files of the gRPC server's TLS.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signs Envoys' client certificates; with it, a client certificate is required.
    pub client_ca: Option<PathBuf>,
}

/// How the ECDS server is secured.
#[derive(Debug, Clone)]
pub struct GrpcSecurity {
    tls: Option<ServerTlsConfig>,
    mtls: bool,
    token: Option<Token>,
    /// False for the plaintext server of a target istiod delivers, which must push no
    /// resource.
    serves_resources: bool,
}

impl GrpcSecurity {
    /// TLS from `files`, and `token` if Envoys are to send one. At least one way of
    /// authenticating clients is needed: a client CA, a token, or both.
    pub fn tls(files: &TlsFiles, token: Option<Token>) -> anyhow::Result<GrpcSecurity> {
        anyhow::ensure!(
            files.client_ca.is_some() || token.is_some(),
            "the ECDS server needs a way to authenticate Envoys: --grpc-client-ca (mTLS), \
             --grpc-token-file, or both"
        );
        let (cert, key) = (read(&files.cert)?, read(&files.key)?);
        pem(&files.cert, &cert, "CERTIFICATE-----")?;
        pem(&files.key, &key, "PRIVATE KEY-----")?;
        let identity = Identity::from_pem(cert, key);
        let mut tls = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &files.client_ca {
            let bundle = read(ca)?;
            pem(ca, &bundle, "CERTIFICATE-----")?;
            tls = tls.client_ca_root(Certificate::from_pem(bundle));
        }
        Ok(GrpcSecurity {
            tls: Some(tls),
            mtls: files.client_ca.is_some(),
            token,
            serves_resources: true,
        })
    }

    /// Plaintext: any client that reaches the port reads the configuration, unless `token`
    /// is set (and then the token crosses the network in clear text).
    pub fn insecure(token: Option<Token>) -> GrpcSecurity {
        GrpcSecurity {
            tls: None,
            mtls: false,
            token,
            serves_resources: true,
        }
    }

    /// Plaintext for a target istiod delivers: the server pushes no resource, so there is
    /// nothing to protect but the fleet list, which is bounded.
    pub fn without_resources(token: Option<Token>) -> GrpcSecurity {
        GrpcSecurity {
            serves_resources: false,
            ..Self::insecure(token)
        }
    }

    /// Whether the server may push the configuration: over TLS, or in plaintext asked for by
    /// name.
    pub fn serves_resources(&self) -> bool {
        self.serves_resources
    }

    pub fn server_tls(&self) -> Option<ServerTlsConfig> {
        self.tls.clone()
    }

    /// How clients are authenticated, for the log.
    pub fn describe(&self) -> &'static str {
        match (self.tls.is_some(), self.mtls, self.token.is_some()) {
            _ if !self.serves_resources => "plaintext, pushing no resource",
            (false, _, false) => "plaintext, no client authentication",
            (false, _, true) => "plaintext, bearer token",
            (true, true, true) => "TLS, client certificate and bearer token",
            (true, true, false) => "TLS, client certificate",
            (true, false, _) => "TLS, bearer token",
        }
    }

    /// Whether a stream's initial metadata carries the token, when one is required.
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<(), Status> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let presented = metadata.get("authorization").map(|v| v.as_bytes());
        if token.admits(presented) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "a valid bearer token is required in the stream's initial metadata \
                 (authorization: Bearer <token>)",
            ))
        }
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// A first check that `bytes` are PEM holding a `-----BEGIN …{label}` block, so that a wrong
/// file is reported at start rather than by the first handshake.
fn pem(path: &Path, bytes: &[u8], label: &str) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(bytes);
    let found = text
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.ends_with(label));
    anyhow::ensure!(
        found,
        "{} holds no PEM block ending in {label:?}",
        path.display()
    );
    Ok(())
}
