//! The bearer token that TCP clients must present: generated into the state dir (0600) unless
//! given, and checked on every TCP call by `caller::identify`.
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rand::RngCore;

use crate::error::{Error, Result};

/// The shortest token accepted, given or read from the file.
const MIN_TOKEN: usize = 16;

/// Whether a token is one a client can send: printable ASCII without spaces, long enough.
fn check_token(what: &str, t: &str) -> Result<()> {
    if t.len() < MIN_TOKEN {
        return Err(Error::invalid(
            what,
            format!(
                "the token is {} characters; it must be at least {MIN_TOKEN}",
                t.len()
            ),
        ));
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            what,
            "the token must be printable ASCII without spaces (it goes into an HTTP header)",
        ));
    }
    Ok(())
}

/// The token to require: the one given, else the one in `path`, else a new one written there
/// (created 0600). A token file that others may read, or whose token is too short, is refused
/// with what to do.
pub fn load_or_create(given: Option<&str>, path: &Path) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(t) = given {
        check_token("--token", t)?;
        return Ok(t.to_string());
    }
    match std::fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(Error::FailedPrecondition(format!(
                    "the token file {} has mode {mode:03o}: others can read it; `chmod 600 {}` (and \
                     change the token if others may have seen it), or remove the file to have a \
                     new token made",
                    path.display(),
                    path.display()
                )));
            }
            let t = std::fs::read_to_string(path)
                .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
            let t = t.trim().to_string();
            if !t.is_empty() {
                check_token(&path.display().to_string(), &t).map_err(|e| {
                    Error::FailedPrecondition(format!(
                        "{e}; write a longer token there, or remove the file to have one made"
                    ))
                })?;
                return Ok(t);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
    }
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    // Created 0600 (O_CREAT's mode; a umask can only take bits away), never chmod'ed after.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    f.write_all(token.as_bytes())
        .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let a = load_or_create(None, &path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_or_create(None, &path).unwrap(), a);
        assert!(load_or_create(Some("short"), &path).is_err());
        assert!(load_or_create(Some("with space 0123456789"), &path).is_err());
    }

    #[test]
    fn a_token_file_others_can_read_or_too_short_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(None, &path).unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(load_or_create(None, &path).unwrap(), "0123456789abcdef0123");
        std::fs::write(&path, "abc\n").unwrap();
        let e = load_or_create(None, &path).unwrap_err();
        assert!(e.to_string().contains("at least 16"), "{e}");
    }
}
