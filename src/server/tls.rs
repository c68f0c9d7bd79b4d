//! TLS on TCP listeners (rustls with aws-lc-rs: AES-GCM in hardware, no OpenSSL): the server
//! configuration, its reload on SIGHUP, and the incoming connections, each handshaken in a
//! task of its own.
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

use super::admission::{Admitted, Connections};
use super::cert::{self, CertFiles};
use crate::error::{Error, Result};

/// A handshake that takes longer is dropped: a client that connects and says nothing must
/// not hold a connection slot.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// What the TLS listeners serve, and what they ask of clients.
#[derive(Debug, Clone)]
pub struct Options {
    pub files: CertFiles,
    /// Clients may present a certificate signed by this CA; such a client needs no token.
    pub client_ca: Option<std::path::PathBuf>,
    /// Refuse clients without such a certificate at the handshake.
    pub require_client_cert: bool,
}

/// The current configuration of every TLS listener; `reload` swaps it for new connections
/// while the open ones go on with the one they were made with.
#[derive(Clone)]
pub struct Tls {
    opts: Options,
    current: Arc<RwLock<Loaded>>,
}

struct Loaded {
    config: Arc<rustls::ServerConfig>,
    fingerprint: String,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn build(opts: &Options) -> Result<Loaded> {
    let (chain, key) = cert::load(&opts.files)?;
    let fingerprint = cert::fingerprint(&chain[0]);
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS versions: {e}")))?;
    let builder = match &opts.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in cert::load_certs(ca)? {
                roots.add(c).map_err(|e| {
                    Error::FailedPrecondition(format!(
                        "--tls-client-ca {}: not a usable CA certificate: {e}",
                        ca.display()
                    ))
                })?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            // Without --tls-require-client-cert, a client without a certificate may still
            // connect; it then needs the token, as on any TCP listener.
            let v = if opts.require_client_cert {
                v
            } else {
                v.allow_unauthenticated()
            };
            let v = v.build().map_err(|e| {
                Error::FailedPrecondition(format!("--tls-client-ca {}: {e}", ca.display()))
            })?;
            builder.with_client_cert_verifier(v)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        Error::FailedPrecondition(format!(
            "the TLS certificate {} and key {} do not go together: {e}",
            opts.files.cert.display(),
            opts.files.key.display()
        ))
    })?;
    // gRPC clients (grpc-go since 1.67) insist on HTTP/2 being chosen by ALPN.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        fingerprint,
    })
}

impl Tls {
    /// Read the certificate, key and client CA; an error says which file and what is wrong.
    pub fn load(opts: Options) -> Result<Tls> {
        let loaded = build(&opts)?;
        Ok(Tls {
            opts,
            current: Arc::new(RwLock::new(loaded)),
        })
    }

    /// Read the files again (SIGHUP). On an error the configuration in use stays, and the error
    /// says why; connections already open are never touched.
    pub fn reload(&self) -> Result<String> {
        let loaded = build(&self.opts)?;
        let fp = loaded.fingerprint.clone();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(fp)
    }

    /// The SHA-256 fingerprint of the certificate in use.
    pub fn fingerprint(&self) -> String {
        self.read(|l| l.fingerprint.clone())
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        self.read(|l| tokio_rustls::TlsAcceptor::from(l.config.clone()))
    }

    fn read<T>(&self, f: impl FnOnce(&Loaded) -> T) -> T {
        f(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// The connections of a TLS listener, once their handshake is done. Each handshake runs in a
/// task of its own, so that a slow or silent client delays nobody else; a failed one is logged
/// (a client that does not trust this certificate, or one without the client certificate
/// asked for) and never reaches the services.
pub fn incoming(
    listener: TcpListener,
    tls: Tls,
    conns: Connections,
) -> ReceiverStream<std::io::Result<Admitted<TlsStream<TcpStream>>>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                // The server stopped reading: it shut down.
                () = tx.closed() => return,
            };
            // serve_with_incoming ignores the builder's tcp_nodelay: without it, Nagle holds
            // small events (a keystroke's echo) back until the peer's delayed ACK.
            let (c, peer) = match accepted.and_then(|(c, p)| c.set_nodelay(true).map(|()| (c, p))) {
                Ok(c) => c,
                Err(e) => {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            // The slot is taken before the handshake: handshakes count as connections.
            let Some(permit) = conns.admit() else {
                continue;
            };
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE, acceptor.accept(c)).await {
                    Ok(Ok(s)) => {
                        let _ = tx.send(Ok(Admitted::new(s, permit))).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, "TLS handshake failed: {e}"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out after {HANDSHAKE:?}"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
