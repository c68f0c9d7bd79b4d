//! The unix socket: refuse to start over a live daemon, replace a stale socket, mode 0600.
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::net::UnixListener;

use crate::error::{Error, Result};

/// Bind the daemon's socket at `path`.
pub async fn bind(path: &Path) -> Result<UnixListener> {
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(Error::FailedPrecondition(format!(
                "another tend daemon answers at {}; stop it first, or give this one another \
                 state dir (TEND_STATE_DIR or --state-dir)",
                path.display()
            )));
        }
        // Nothing answers: a daemon died without cleaning up.
        std::fs::remove_file(path)
            .map_err(|e| Error::io(format!("remove the stale socket {}", path.display()), e))?;
    }
    // The socket is created 0600 by bind itself, under a umask that takes every other bit away:
    // a chmod after bind would leave a moment in which anyone could connect.
    // SAFETY: umask(2) only swaps the process's file-creation mask; it is restored right after.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| Error::io(format!("bind {}", path.display()), e))?;
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
        .permissions()
        .mode()
        & 0o777;
    if mode != 0o600 {
        return Err(Error::Internal(format!(
            "{} was created with mode {mode:03o}, not 0600",
            path.display()
        )));
    }
    Ok(listener)
}
