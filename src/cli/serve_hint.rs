//! What `tend serve` prints for the people who will connect to it: the exact client command
//! line for each TLS listener.
use std::net::SocketAddr;

use crate::server::Listening;

/// `tend --connect tls://… --tls-fingerprint … ps` for each TLS listener: the host a client
/// dials (this host's name for a listener on every interface; the generated certificate is for
/// it), the fingerprint to pin, and the token (or the client certificate it must present).
pub fn client_command_lines(l: &Listening) -> Vec<String> {
    let Some((fingerprint, cert)) = &l.tls_cert else {
        return Vec::new();
    };
    let credentials = if l.tls_client_cert_required {
        "--tls-client-cert CLIENT-CERT.pem --tls-client-key CLIENT-KEY.pem".to_string()
    } else {
        match &l.token_file {
            Some(f) => format!("--token \"$(cat {})\"", f.display()),
            None => "--token \"$TEND_TOKEN\"".to_string(),
        }
    };
    l.tls
        .iter()
        .map(|a| {
            format!(
                "tend --connect tls://{} --tls-fingerprint {fingerprint} {credentials} ps    \
                 (or --tls-ca {} in place of the fingerprint)",
                dialled(a),
                cert.display()
            )
        })
        .collect()
}

fn dialled(a: &SocketAddr) -> String {
    let host = if a.ip().is_unspecified() {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    } else if a.is_ipv6() {
        format!("[{}]", a.ip())
    } else {
        a.ip().to_string()
    };
    format!("{host}:{}", a.port())
}
