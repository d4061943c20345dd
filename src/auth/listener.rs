//! The API's HTTPS listener: TLS handshakes (each on a task of its own, so a slow client
//! holds up no other), the serving certificate of the node, optional client certificates
//! verified against the cluster CA, and what a connection proved (`Peer`), read once per
//! connection and handed to every request on it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

use super::Subject;

/// What a connection proved at its TLS handshake.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The client certificate, if the client sent one (verified against the cluster CA by
    /// the handshake).
    pub cert: Option<ClientCert>,
}

/// A verified client certificate: its subject, and its DER (which a node relaying the
/// request passes on for the next node to verify for itself).
#[derive(Clone, Debug)]
pub struct ClientCert {
    pub subject: Subject,
    pub der: Arc<[u8]>,
}

/// Checks a client certificate outside a handshake (one a node relays) as the handshake
/// checks it: issued by the cluster CA, valid now, for client authentication.
pub type CertVerifier = Arc<dyn rustls::server::danger::ClientCertVerifier>;

/// The verifier of client certificates issued by the CA in `ca_pem`; optional at the
/// handshake (anonymous and bearer-token clients send none).
pub fn client_verifier(ca_pem: &str) -> anyhow::Result<CertVerifier> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("the cluster CA is not PEM")?)?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .context("building the client certificate verifier")
}

/// The subject of `der` if `verifier` accepts it now.
pub fn verify_relayed(verifier: &CertVerifier, der: &[u8]) -> Result<Subject, String> {
    let cert = CertificateDer::from(der.to_vec());
    verifier.verify_client_cert(&cert, &[], rustls::pki_types::UnixTime::now()).map_err(|e| e.to_string())?;
    Subject::from_der(der)
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// The server side of the API's TLS: this node's certificate; client certificates are
/// optional (anonymous and bearer-token clients send none) and verified when sent.
pub fn server_config(tls: &orch_raft::tls::NodeTls, verifier: CertVerifier) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().context("the node certificate is not PEM")?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).context("the node key is not PEM")?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the node certificate and key do not match")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections and yields those whose TLS handshake succeeded.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
}

/// A handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            while !tx.is_closed() {
                let (stream, addr) = match tcp.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "accepting an API connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                // API exchanges are small; Nagle's algorithm would add ~40 ms to some.
                let _ = stream.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let cert = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| {
                                Subject::from_der(c).ok().map(|subject| ClientCert { subject, der: Arc::from(c.as_ref()) })
                            });
                            let _ = tx.send((tls, Peer { addr, cert })).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task only ends with the process.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        Ok(Peer { addr: self.local, cert: None })
    }
}
