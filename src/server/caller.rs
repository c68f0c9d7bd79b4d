//! Who is calling: the daemon's owner, or a plugin calling back with the token it was given.
//!
//! Every listener reads `authorization: Bearer <t>` in an interceptor, which puts a `Caller`
//! into the request's extensions for the services to read:
//!
//! - `t` is a loaded plugin's token (`TEND_TOKEN`, `tp_…`): `Caller::Plugin(name)`, on the unix
//!   socket and on TCP alike. On TCP it is accepted in place of the daemon's token, so that a
//!   plugin running elsewhere (another container, another host) can call back; what it may do
//!   is scoped (see below).
//! - `t` has a plugin token's shape but no loaded plugin holds it: Unauthenticated, naming the
//!   unloaded plugin when the loader still remembers it. A plugin token stops working when its
//!   plugin is unloaded, wherever it is presented.
//! - otherwise, on a TLS listener with `--tls-client-ca`, a client that presented a certificate
//!   signed by that CA (rustls verified it in the handshake): `Caller::Owner`, without a token;
//!   its subject goes into the extensions too (`ClientCert`), for the log of each Start.
//! - otherwise, on TCP: the daemon's token is required, as before (`Caller::Owner`).
//! - otherwise, on the unix socket: `Caller::Owner`, token or not. The socket is 0600 in a 0700
//!   state dir: whoever can connect to it is the daemon's user, who could read any token from
//!   the state dir anyway. A plugin's token does not restrict a process of the owner; it scopes
//!   what a plugin does when it uses it, and is what works on TCP for a plugin in another
//!   environment (where the socket cannot be reached).
//!
//! What a plugin caller may do: everything but LoaderService's Load and Unload
//! (PermissionDenied), so that a plugin cannot load code into the daemon or unload other
//! plugins; what it starts (ProcessService Start and Run, AgentService Spawn) is tagged
//! `tend.plugin.owner=<name>`, and stopped and removed when the plugin is unloaded. Of the
//! processes, it sees and acts on only those it started: any other id is NotFound to it, and
//! List and Watch show it only its own (a plugin cannot signal, read or remove the owner's
//! processes, nor another plugin's).
use tonic::{Request, Status};

use crate::loader::{Loader, OWNER_TAG, PLUGIN_TOKEN_PREFIX};

/// The caller of a request, put in its extensions by `identify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The daemon's user: on the unix socket, or with the daemon's token on TCP.
    Owner,
    /// A loaded plugin, by name, calling with its token.
    Plugin(String),
}

impl Caller {
    /// The caller of `req`. Every listener identifies its callers, so a request without the
    /// extension only comes from a test calling a service directly: the owner.
    pub fn of<T>(req: &Request<T>) -> Caller {
        req.extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Owner)
    }

    /// The plugin's name, for a plugin caller.
    pub fn plugin(&self) -> Option<&str> {
        match self {
            Caller::Plugin(name) => Some(name),
            Caller::Owner => None,
        }
    }

    /// Mark what a plugin caller starts as the plugin's (`OWNER_TAG`), replacing a value the
    /// plugin may have set itself: a plugin cannot hand what it starts to another plugin, nor
    /// keep it past its unload. The owner's tags are left as they are (an owner may tag a
    /// process with a plugin's name to have it stopped with that plugin).
    pub fn tag(&self, tags: &mut std::collections::BTreeMap<String, String>) {
        if let Caller::Plugin(name) = self {
            tags.insert(OWNER_TAG.to_string(), name.clone());
        }
    }

    /// Whether this caller may see and act on what carries `tags`: the owner anything, a plugin
    /// only what it started (tagged `OWNER_TAG` with its name).
    pub fn may_touch(&self, tags: &std::collections::BTreeMap<String, String>) -> bool {
        match self {
            Caller::Owner => true,
            Caller::Plugin(name) => tags.get(OWNER_TAG) == Some(name),
        }
    }

    /// PermissionDenied for a plugin caller, for what only the owner may do.
    pub fn owner_only(&self, what: &str) -> Result<(), Status> {
        match self {
            Caller::Owner => Ok(()),
            Caller::Plugin(name) => Err(Status::permission_denied(format!(
                "a plugin's token cannot {what} (the call came with the token of plugin \
                 {name:?}); call without it, as the daemon's user"
            ))),
        }
    }
}

/// The subject of the verified client certificate a call came with (TLS listeners with
/// `--tls-client-ca` only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub subject: String,
}

impl ClientCert {
    /// The client certificate's subject of `req`, if it came with one.
    pub fn of<T>(req: &Request<T>) -> Option<&str> {
        req.extensions()
            .get::<ClientCert>()
            .map(|c| c.subject.as_str())
    }
}

/// The interceptor of a listener: `daemon_token` is the token TCP callers need (`None` on the
/// unix socket, where calls without a plugin token are the owner's).
pub fn identify(
    loader: Loader,
    daemon_token: Option<String>,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    let want = daemon_token.map(|t| format!("Bearer {t}"));
    move |mut req: Request<()>| {
        // Present only on a TLS listener that asks for client certificates: the listener's
        // verifier accepted it, against --tls-client-ca, before any request was read.
        let client_cert = req
            .peer_certs()
            .and_then(|certs| certs.first().map(|c| super::cert::subject(c)));
        let has_client_cert = client_cert.is_some();
        if let Some(subject) = client_cert {
            req.extensions_mut().insert(ClientCert { subject });
        }
        let got = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // The daemon's token first: one given with --token may start like a plugin's.
        if let Some(want) = &want {
            if constant_time_eq(got, want.as_bytes()) {
                req.extensions_mut().insert(Caller::Owner);
                return Ok(req);
            }
        }
        let plugin_token = got
            .strip_prefix(b"Bearer ")
            .filter(|t| t.starts_with(PLUGIN_TOKEN_PREFIX.as_bytes()))
            .and_then(|t| std::str::from_utf8(t).ok());
        if let Some(t) = plugin_token {
            if let Some(name) = loader.by_token(t) {
                req.extensions_mut().insert(Caller::Plugin(name));
                return Ok(req);
            }
            return Err(Status::unauthenticated(match loader.retired_token(t) {
                Some(name) => {
                    format!("the plugin token is no longer valid (plugin {name:?} was unloaded)")
                }
                None => "the plugin token is not valid: no loaded plugin was given it (its \
                         plugin was unloaded, or the daemon restarted)"
                    .to_string(),
            }));
        }
        if want.is_none() || has_client_cert {
            req.extensions_mut().insert(Caller::Owner);
            return Ok(req);
        }
        if got.is_empty() {
            Err(Status::unauthenticated(
                "this TCP listener needs `authorization: Bearer <token>` (the token is in the \
                 daemon's state dir, token file), or, where the daemon was given \
                 --tls-client-ca, a client certificate signed by that CA",
            ))
        } else {
            Err(Status::unauthenticated("the bearer token is wrong"))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn loader(dir: &std::path::Path) -> Loader {
        let sup =
            crate::supervisor::Supervisor::new(dir, crate::config::Limits::default()).unwrap();
        Loader::new(
            sup,
            dir,
            &dir.join("tend.sock"),
            std::time::Duration::from_secs(1),
        )
    }

    fn call(
        check: &impl Fn(Request<()>) -> Result<Request<()>, Status>,
        auth: Option<&str>,
    ) -> Result<Caller, (Code, String)> {
        let mut r = Request::new(());
        if let Some(v) = auth {
            r.metadata_mut().insert("authorization", v.parse().unwrap());
        }
        check(r)
            .map(|r| Caller::of(&r))
            .map_err(|s| (s.code(), s.message().to_string()))
    }

    #[tokio::test]
    async fn tcp_takes_only_the_exact_daemon_token_or_a_plugin_token() {
        let dir = tempfile::tempdir().unwrap();
        let check = identify(loader(dir.path()), Some("s3cret-token-0123456789".into()));
        assert_eq!(
            call(&check, Some("Bearer s3cret-token-0123456789")),
            Ok(Caller::Owner)
        );
        for wrong in [None, Some("Bearer s3cret-token-012345678"), Some("s3cret")] {
            assert_eq!(call(&check, wrong).unwrap_err().0, Code::Unauthenticated);
        }
        let (code, msg) = call(&check, Some("Bearer tp_0123456789abcdef")).unwrap_err();
        assert_eq!(code, Code::Unauthenticated);
        assert!(msg.contains("plugin token is not valid"), "{msg}");
    }

    #[tokio::test]
    async fn the_socket_is_the_owners_but_a_stale_plugin_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let check = identify(loader(dir.path()), None);
        assert_eq!(call(&check, None), Ok(Caller::Owner));
        assert_eq!(
            call(&check, Some("Bearer anything-else")),
            Ok(Caller::Owner)
        );
        let (code, _) = call(&check, Some("Bearer tp_0123456789abcdef")).unwrap_err();
        assert_eq!(code, Code::Unauthenticated);
    }

    #[test]
    fn a_plugin_caller_tags_what_it_starts_and_cannot_load() {
        let mut tags = [(OWNER_TAG.to_string(), "other".to_string())].into();
        Caller::Plugin("kv".into()).tag(&mut tags);
        assert_eq!(tags.get(OWNER_TAG).map(String::as_str), Some("kv"));
        let mut mine = std::collections::BTreeMap::new();
        Caller::Owner.tag(&mut mine);
        assert!(mine.is_empty());
        assert!(Caller::Owner.owner_only("load or unload plugins").is_ok());
        let e = Caller::Plugin("kv".into())
            .owner_only("load or unload plugins")
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        assert!(e
            .message()
            .starts_with("a plugin's token cannot load or unload plugins"));
    }
}
