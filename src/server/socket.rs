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
    let listener =
        UnixListener::bind(path).map_err(|e| Error::io(format!("bind {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(format!("chmod 0600 {}", path.display()), e))?;
    Ok(listener)
}
