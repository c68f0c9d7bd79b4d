//! What to load as a plugin, as the core sees it: `PluginSpec` with its values as given (so it
//! reads back as it was sent) and the effective ones (defaults filled in) beside them.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::agent::spec::Policy;
use crate::error::{Error, Result};
use crate::loader::handshake::{DEFAULT_PROTOCOL_VERSIONS, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE};
use crate::loader::store::{Package, Want};

/// The handshake timeout when a Load gives none.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The dial and health timeout when a Load gives none.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A plugin to load. Shape-checked by the service (`loader_convert`); the core checks it
/// against the host (the binary, the socket directory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginSpec {
    pub name: String,
    pub binary: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// As given; empty is the host.
    pub environment: String,
    /// As given: 0 means `DEFAULT_HANDSHAKE_TIMEOUT`.
    pub handshake_timeout_ms: u32,
    /// As given: 0 means `DEFAULT_DIAL_TIMEOUT`.
    pub dial_timeout_ms: u32,
    /// As given: both empty means tend's own cookie.
    pub magic_cookie_key: String,
    pub magic_cookie_value: String,
    /// As given: empty means `DEFAULT_PROTOCOL_VERSIONS`.
    pub protocol_versions: Vec<u32>,
    /// Restart when it exits without Unload; `None`: it stays EXITED.
    pub restart: Option<Policy>,
    /// `None`: the daemon's grace period.
    pub unload_grace_ms: Option<u32>,
    /// Load from the stores: the package and the versions wanted (`binary` is set from the
    /// install).
    pub package: Option<(Package, Want)>,
}

impl PluginSpec {
    /// How long to wait for the handshake line.
    pub fn handshake_timeout(&self) -> Duration {
        match self.handshake_timeout_ms {
            0 => DEFAULT_HANDSHAKE_TIMEOUT,
            ms => Duration::from_millis(ms.into()),
        }
    }

    /// How long to wait for the dial and health, after the handshake line.
    pub fn dial_timeout(&self) -> Duration {
        match self.dial_timeout_ms {
            0 => DEFAULT_DIAL_TIMEOUT,
            ms => Duration::from_millis(ms.into()),
        }
    }

    /// The magic cookie's variable and value.
    pub fn cookie(&self) -> (&str, &str) {
        if self.magic_cookie_key.is_empty() {
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        } else {
            (&self.magic_cookie_key, &self.magic_cookie_value)
        }
    }

    /// The app protocol versions offered.
    pub fn versions(&self) -> &[u32] {
        if self.protocol_versions.is_empty() {
            DEFAULT_PROTOCOL_VERSIONS
        } else {
            &self.protocol_versions
        }
    }
}

/// Plugin names: 1 to 64 of `[A-Za-z0-9._-]`, starting with a letter or digit (as agents').
pub fn check_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(field, "is required (the plugin's name)"));
    }
    crate::agent::spec::check_name(field, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_empty_take_the_documented_defaults() {
        let s = PluginSpec::default();
        assert_eq!(s.handshake_timeout(), Duration::from_secs(30));
        assert_eq!(s.dial_timeout(), Duration::from_secs(10));
        assert_eq!(s.cookie(), (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE));
        assert_eq!(s.versions(), &[1]);
        let s = PluginSpec {
            handshake_timeout_ms: 250,
            magic_cookie_key: "BASIC_PLUGIN".into(),
            magic_cookie_value: "hello".into(),
            protocol_versions: vec![2, 3],
            ..PluginSpec::default()
        };
        assert_eq!(s.handshake_timeout(), Duration::from_millis(250));
        assert_eq!(s.cookie(), ("BASIC_PLUGIN", "hello"));
        assert_eq!(s.versions(), &[2, 3]);
        assert!(check_name("spec.name", "").is_err());
        assert!(check_name("spec.name", "kv-1.2").is_ok());
    }
}
