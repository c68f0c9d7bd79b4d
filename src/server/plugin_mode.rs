//! `tend serve --handshake`: the plugin side of the handshake, so that a tend (or any go-plugin
//! host) can load a tend. The cookie and protocol versions are checked before anything starts,
//! the line goes to stdout once the socket answers, and the daemon dies with its host.
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::loader::handshake::{CORE_PROTOCOL_VERSION, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE};

/// The app protocol version this tend speaks as a plugin.
pub const APP_PROTOCOL_VERSION: u32 = 1;

/// Where a plugin tend keeps its socket (and, unless told otherwise, its state): the host's
/// PLUGIN_UNIX_SOCKET_DIR. `Err` is the message for a person who started it by hand, or for a
/// host that offered no version this tend speaks.
pub fn check() -> Result<Option<PathBuf>, String> {
    match std::env::var(MAGIC_COOKIE_KEY) {
        Ok(v) if v == MAGIC_COOKIE_VALUE => {}
        _ => {
            return Err(format!(
                "tend serve --handshake is a plugin: it is started by a plugin host (tend's \
                 LoaderService, or go-plugin) that sets {MAGIC_COOKIE_KEY}; to run a daemon \
                 yourself, use `tend serve`"
            ))
        }
    }
    if let Ok(offered) = std::env::var("PLUGIN_PROTOCOL_VERSIONS") {
        let speaks = offered
            .split(',')
            .any(|v| v.trim().parse() == Ok(APP_PROTOCOL_VERSION));
        if !offered.trim().is_empty() && !speaks {
            return Err(format!(
                "this tend speaks app protocol version {APP_PROTOCOL_VERSION}; the host offered \
                 {offered:?} (PLUGIN_PROTOCOL_VERSIONS)"
            ));
        }
    }
    Ok(std::env::var_os("PLUGIN_UNIX_SOCKET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from))
}

/// Die with the host: SIGTERM (an orderly shutdown) when the parent goes, and at once if it
/// is already gone.
pub fn die_with_parent() {
    // SAFETY: prctl with integer arguments; getppid cannot fail.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM, 0, 0, 0);
        if libc::getppid() == 1 {
            libc::raise(libc::SIGTERM);
        }
    }
}

/// The handshake line, on stdout, once: `CORE|APP|unix|PATH|grpc`.
pub fn announce(socket: &Path) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|unix|{}|grpc",
        socket.display()
    );
    let _ = out.flush();
}
