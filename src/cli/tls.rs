//! The client's side of TLS (`tls://host:port`): the daemon is verified by a CA file or by the
//! pinned SHA-256 fingerprint of its certificate before any request is sent, and a client
//! certificate is presented for mTLS.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::config;

/// How to verify the daemon, and what to present to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA (PEM) the daemon's certificate must chain to; for the generated certificate, the
    /// certificate itself (`<state dir>/tls-cert.pem`).
    pub ca: Option<PathBuf>,
    /// `sha256:<hex>` of the daemon's certificate (colons and case do not matter).
    pub fingerprint: Option<String>,
    /// A client certificate (PEM) and its key, for a daemon with `--tls-client-ca`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// The 32 bytes of a fingerprint written `sha256:AB:CD…`, `ab cd…` or bare hex.
pub fn parse_fingerprint(s: &str) -> anyhow::Result<[u8; 32]> {
    let t = s.trim();
    let t = t
        .get(..7)
        .filter(|p| p.eq_ignore_ascii_case("sha256:"))
        .map_or(t, |_| &t[7..]);
    let hex: String = t.chars().filter(|c| *c != ':' && *c != ' ').collect();
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>();
    match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
        Some(b) => Ok(b),
        None => anyhow::bail!(
            "--tls-fingerprint {s:?}: want sha256: and 64 hex digits, as `tend serve` logs it"
        ),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_certs(what: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{what} {}: not a readable PEM file", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{what} {}: holds no certificate",
        path.display()
    );
    Ok(certs)
}

/// The pinned certificate, and the CA too when both are given.
#[derive(Debug)]
struct Pinned {
    want: [u8; 32],
    ca: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got != self.want {
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            return Err(rustls::Error::General(format!(
                "the daemon's certificate is sha256:{}, not the pinned sha256:{}: this is not \
                 the daemon you pinned, or its certificate changed (its operator can tell you \
                 the new fingerprint)",
                hex(&got),
                hex(&self.want)
            )));
        }
        // Pinned, as ssh pins a host key: names and dates do not matter, unless a CA is
        // given as well.
        if let Some(ca) = &self.ca {
            ca.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        }
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

/// The rustls configuration for `tls`: a CA, a pinned fingerprint, or both; with neither, the
/// local daemon's generated certificate (`<state dir>/tls-cert.pem`) when there is one. There is
/// no way to skip the verification.
pub fn client_config(tls: &ClientTls) -> anyhow::Result<rustls::ClientConfig> {
    let provider = provider();
    let mut ca = tls.ca.clone();
    if ca.is_none() && tls.fingerprint.is_none() {
        let local = config::default_state_dir().join("tls-cert.pem");
        anyhow::ensure!(
            local.exists(),
            "tls://: give the daemon's CA (--tls-ca or TEND_TLS_CA; for a generated certificate, \
             its tls-cert.pem) or its fingerprint (--tls-fingerprint or TEND_TLS_FINGERPRINT), \
             as `tend serve` logs them"
        );
        ca = Some(local);
    }
    let ca_verifier = match &ca {
        None => None,
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs("--tls-ca", path)? {
                roots
                    .add(c)
                    .with_context(|| format!("--tls-ca {}", path.display()))?;
            }
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .with_context(|| format!("--tls-ca {}", path.display()))?,
            )
        }
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match (&tls.fingerprint, ca_verifier) {
        (Some(fp), ca) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                want: parse_fingerprint(fp)?,
                ca,
                provider,
            })),
        (None, Some(ca)) => builder.with_webpki_verifier(ca),
        (None, None) => unreachable!("a CA is found above when there is no fingerprint"),
    };
    let mut config = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = read_certs("--tls-client-cert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
                format!("--tls-client-key {}: no PEM private key", key.display())
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .context("--tls-client-cert and --tls-client-key do not go together")?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => anyhow::bail!("give both --tls-client-cert and --tls-client-key"),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The name to verify the daemon's certificate against: the host of `host:port`.
pub fn server_name(host_port: &str) -> anyhow::Result<ServerName<'static>> {
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|_| anyhow::anyhow!("tls://{host_port}: {host:?} is not a host name or address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_read_in_every_usual_spelling() {
        let hex = "ab".repeat(32);
        let want = [0xabu8; 32];
        let colons = vec!["AB"; 32].join(":");
        for s in [
            format!("sha256:{hex}"),
            format!("SHA256:{colons}"),
            hex.clone(),
            colons.clone(),
        ] {
            assert_eq!(parse_fingerprint(&s).unwrap(), want, "{s}");
        }
        for bad in ["sha256:abcd", "", &format!("md5:{hex}"), &"zz".repeat(32)] {
            assert!(parse_fingerprint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_server_name_is_the_host() {
        assert_eq!(
            server_name("127.0.0.1:7443").unwrap(),
            ServerName::try_from("127.0.0.1").unwrap()
        );
        assert_eq!(
            server_name("[::1]:7443").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            server_name("tend.example:7443").unwrap(),
            ServerName::try_from("tend.example").unwrap()
        );
    }
}
