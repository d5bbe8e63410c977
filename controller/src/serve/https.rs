//! The HTTP API over TLS: a listener that hands axum only connections whose TLS handshake has
//! completed. Handshakes run in tasks of their own, each bounded by a timeout, so that a client
//! that opens a connection and stalls holds up nobody else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// How long a client has to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PEM files of the HTTP API's TLS.
#[derive(Debug, Clone)]
pub struct ApiTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ApiTls {
    /// The acceptor for the certificate chain and key, offering HTTP/2 and HTTP/1.1.
    pub fn acceptor(&self) -> anyhow::Result<TlsAcceptor> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| pem_error(&self.cert, "a certificate chain"))?;
        anyhow::ensure!(
            !certs.is_empty(),
            pem_error(&self.cert, "a certificate chain")
        );
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .with_context(|| pem_error(&self.key, "a private key"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .with_context(|| {
                format!(
                    "{} and {} do not make a TLS identity",
                    self.cert.display(),
                    self.key.display()
                )
            })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

fn pem_error(path: &Path, what: &str) -> String {
    format!("{} does not hold {what} in PEM", path.display())
}

/// Connections that completed their TLS handshake, for `axum::serve`.
pub struct HttpsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl HttpsListener {
    /// Accepts on `tcp` until the listener is dropped, handshaking each connection apart.
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor, local: SocketAddr) -> HttpsListener {
        let (sender, incoming) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    () = sender.closed() => return,
                    accepted = tcp.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            warn!(%error, "cannot accept an HTTPS connection");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = sender.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        HttpsListener { incoming, local }
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(connection) => connection,
            // The accept task ends only when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
