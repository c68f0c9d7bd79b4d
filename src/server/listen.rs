//! The TCP listeners: plaintext on loopback only (unless `--insecure-plaintext`), TLS anywhere.
use std::net::SocketAddr;

use tokio::net::TcpListener;

use super::cert;
use super::tls::{self, Tls};
use crate::config::Config;
use crate::error::{Error, Result};

/// The bound TCP listeners, and the TLS configuration when there are TLS ones.
pub struct Bound {
    pub plain: Vec<TcpListener>,
    pub tls: Vec<TcpListener>,
    pub tls_config: Option<Tls>,
}

async fn bind_one(scheme: &str, addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("listen on {scheme}://{addr}"), e))
}

/// Whether only this host can reach `a` (127.0.0.0/8, ::1, and ::ffff:127.x).
fn loopback(a: &SocketAddr) -> bool {
    a.ip().to_canonical().is_loopback()
}

/// Bind every TCP listener of `config`. A plaintext one that is not on loopback is refused,
/// saying to use TLS, unless `--insecure-plaintext`, which is warned about at every start. TLS
/// options without a TLS listener are refused too: an operator who gave them expects TLS.
pub async fn bind(config: &Config) -> Result<Bound> {
    let t = &config.tls;
    if config.tls_listen.is_empty()
        && (t.cert.is_some() || t.key.is_some() || t.client_ca.is_some() || t.require_client_cert)
    {
        return Err(Error::invalid(
            "--listen",
            "--tls-cert, --tls-key, --tls-client-ca and --tls-require-client-cert are for TLS \
             listeners; add --listen tls://HOST:PORT",
        ));
    }
    if t.cert.is_some() != t.key.is_some() {
        return Err(Error::invalid(
            "--tls-cert",
            "give both --tls-cert and --tls-key (the certificate chain and its private key, PEM)",
        ));
    }
    if t.require_client_cert && t.client_ca.is_none() {
        return Err(Error::invalid(
            "--tls-require-client-cert",
            "needs --tls-client-ca FILE, the CA that signs the clients' certificates",
        ));
    }
    if config.insecure_plaintext {
        tracing::warn!(
            "--insecure-plaintext: plaintext TCP listeners may listen beyond loopback; whoever \
             can see their traffic can read the bearer token and take over this daemon (use \
             --listen tls://HOST:PORT instead)"
        );
    }
    let mut plain = Vec::new();
    for addr in &config.tcp {
        let l = bind_one("tcp", addr).await?;
        let local = l
            .local_addr()
            .map_err(|e| Error::io(format!("local address of tcp://{addr}"), e))?;
        if !loopback(&local) && !config.insecure_plaintext {
            return Err(Error::FailedPrecondition(format!(
                "--listen tcp://{addr}: plaintext TCP is only served on loopback (127.0.0.1, \
                 ::1): on {} anyone who can see the traffic could read the token and every \
                 process's output. Use --listen tls://{addr} (a certificate is generated into \
                 the state dir, or give --tls-cert/--tls-key), or, behind a tunnel or network \
                 you trust, add --insecure-plaintext",
                local.ip()
            )));
        }
        if !loopback(&local) {
            tracing::warn!(%local, "plaintext TCP beyond loopback (--insecure-plaintext)");
        }
        plain.push(l);
    }
    let mut tls_listeners = Vec::new();
    for addr in &config.tls_listen {
        tls_listeners.push(bind_one("tls", addr).await?);
    }
    let tls_config = if tls_listeners.is_empty() {
        None
    } else {
        let files = match (&t.cert, &t.key) {
            (Some(c), Some(k)) => cert::CertFiles {
                cert: c.clone(),
                key: k.clone(),
                generated: false,
            },
            _ => {
                let files = cert::generated_in(&config.state_dir);
                let addrs: Vec<SocketAddr> = tls_listeners
                    .iter()
                    .filter_map(|l| l.local_addr().ok())
                    .collect();
                cert::ensure_generated(&files, &cert::host_names(&addrs))?;
                files
            }
        };
        let tls = Tls::load(tls::Options {
            files,
            client_ca: t.client_ca.clone(),
            require_client_cert: t.require_client_cert,
        })?;
        tracing::info!(
            cert = %tls.options().files.cert.display(),
            fingerprint = %tls.fingerprint(),
            generated = tls.options().files.generated,
            "TLS certificate"
        );
        Some(tls)
    };
    Ok(Bound {
        plain,
        tls: tls_listeners,
        tls_config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_v4_v6_and_mapped() {
        for (a, want) in [
            ("127.0.0.1:1", true),
            ("127.1.2.3:1", true),
            ("[::1]:1", true),
            ("[::ffff:127.0.0.1]:1", true),
            ("0.0.0.0:1", false),
            ("[::]:1", false),
            ("10.0.0.1:1", false),
        ] {
            assert_eq!(loopback(&a.parse().unwrap()), want, "{a}");
        }
    }

    #[tokio::test]
    async fn plaintext_beyond_loopback_is_refused_saying_to_use_tls() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::new(dir.path());
        c.tcp = vec!["0.0.0.0:0".into()];
        let e = bind(&c).await.err().expect("refused");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.to_string().contains("--listen tls://0.0.0.0:0"), "{e}");
        c.insecure_plaintext = true;
        assert_eq!(bind(&c).await.unwrap().plain.len(), 1);
        let mut c = Config::new(dir.path());
        c.tls.client_ca = Some("/ca.pem".into());
        let e = bind(&c).await.err().expect("refused");
        assert!(e.to_string().contains("add --listen tls://"), "{e}");
    }
}
