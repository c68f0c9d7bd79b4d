//! The TLS listeners' certificate: the operator's (`--tls-cert`/`--tls-key`), or a self-signed
//! one generated into the state dir on first start and reused after, and its fingerprint.
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Where the certificate and key come from.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Made by the daemon (and so made again if both files are missing).
    pub generated: bool,
}

/// The generated certificate's files in `state_dir`.
pub fn generated_in(state_dir: &Path) -> CertFiles {
    CertFiles {
        cert: state_dir.join("tls-cert.pem"),
        key: state_dir.join("tls-key.pem"),
        generated: true,
    }
}

/// `sha256:<64 hex digits>` of a certificate's DER: what clients pin (`--tls-fingerprint`).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Make the self-signed certificate for `names` (host names and addresses) unless both of its
/// files exist. The key is created 0600 (O_CREAT's mode), never chmod'ed after; it is written
/// before the certificate, so that a daemon killed in between leaves no certificate without
/// its key.
pub fn ensure_generated(files: &CertFiles, names: &[String]) -> Result<()> {
    match (files.cert.exists(), files.key.exists()) {
        (true, true) => return Ok(()),
        (true, false) | (false, true) => {
            return Err(Error::FailedPrecondition(format!(
                "of the generated TLS certificate {} and its key {}, only one exists; remove \
                 it to have both made again (clients that pinned the old one must then be \
                 given the new fingerprint)",
                files.cert.display(),
                files.key.display()
            )))
        }
        (false, false) => {}
    }
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| Error::Internal(format!("certificate names {names:?}: {e}")))?;
    let host = names.first().cloned().unwrap_or_else(|| "localhost".into());
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("tend on {host}"));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(|e| Error::Internal(format!("key: {e}")))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| Error::Internal(format!("self-signed certificate: {e}")))?;
    write_new(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&files.cert, cert.pem().as_bytes(), 0o644)?;
    Ok(())
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// The names a generated certificate is for: this host's name, `localhost`, the loopback
/// addresses, and each listener's address (every interface's address for 0.0.0.0 or ::), so
/// that a client can verify it by whichever of them it dials.
pub fn host_names(listen: &[std::net::SocketAddr]) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(h) = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
    {
        names.push(h);
    }
    names.push("localhost".into());
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    ];
    for a in listen {
        if a.ip().is_unspecified() {
            if let Ok(ifs) = nix::ifaddrs::getifaddrs() {
                for i in ifs {
                    let ip = i.address.and_then(|s| {
                        s.as_sockaddr_in()
                            .map(|v4| IpAddr::V4(v4.ip()))
                            .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
                    });
                    // Link-local IPv6 addresses need a zone to be dialled: leave them out.
                    if let Some(ip) = ip.filter(|ip| !is_link_local_v6(ip)) {
                        ips.push(ip);
                    }
                }
            }
        } else {
            ips.push(a.ip());
        }
    }
    for ip in ips {
        let s = ip.to_string();
        if !names.contains(&s) {
            names.push(s);
        }
    }
    names
}

fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// The certificate chain and key in PEM files, with errors that name the file.
pub fn load(files: &CertFiles) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = load_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        Error::FailedPrecondition(format!(
            "{}: no private key in PEM (PKCS#8, PKCS#1 or SEC1) could be read: {e}",
            files.key.display()
        ))
    })?;
    Ok((chain, key))
}

/// Every certificate of a PEM file; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::FailedPrecondition(format!(
                "{}: not a readable PEM certificate file: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "{}: holds no certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// The subject of a client certificate, as `CN=…, O=…`, for the log.
pub fn subject(der: &[u8]) -> String {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, c)) => c.subject().to_string(),
        Err(_) => format!("(unparsed certificate {})", fingerprint(der)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_is_reused_and_its_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let files = generated_in(dir.path());
        let names = host_names(&["127.0.0.1:7070".parse().unwrap()]);
        assert!(names.contains(&"127.0.0.1".to_string()), "{names:?}");
        ensure_generated(&files, &names).unwrap();
        let mode = std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (chain, _) = load(&files).unwrap();
        let first = fingerprint(&chain[0]);
        assert!(
            first.starts_with("sha256:") && first.len() == 7 + 64,
            "{first}"
        );
        ensure_generated(&files, &names).unwrap();
        assert_eq!(fingerprint(&load(&files).unwrap().0[0]), first);
        assert!(
            subject(&chain[0]).contains("CN=tend on"),
            "{}",
            subject(&chain[0])
        );

        std::fs::remove_file(&files.key).unwrap();
        let e = ensure_generated(&files, &names).unwrap_err();
        assert!(e.to_string().contains("only one exists"), "{e}");
    }
}
