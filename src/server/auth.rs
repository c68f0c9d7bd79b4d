//! The bearer token that TCP clients must present: generated into the state dir (0600) unless
//! given, and checked by an interceptor on every TCP call.
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rand::RngCore;
use tonic::{Request, Status};

use crate::error::{Error, Result};

/// The token to require: the one given, else the one in `path`, else a new one written there.
pub fn load_or_create(given: Option<&str>, path: &Path) -> Result<String> {
    if let Some(t) = given {
        if t.len() < 16 {
            return Err(Error::invalid("--token", "must be at least 16 characters"));
        }
        return Ok(t.to_string());
    }
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim().to_string();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
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

/// An interceptor accepting only `authorization: Bearer <token>`.
pub fn require(token: String) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    let want = format!("Bearer {token}");
    move |req: Request<()>| {
        let got = req
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(got, want.as_bytes()) {
            Ok(req)
        } else if got.is_empty() {
            Err(Status::unauthenticated(
                "this TCP listener needs `authorization: Bearer <token>`; the token is in the \
                 daemon's state dir (token file)",
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

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let check = require("s3cret-token-0123456789".into());
        let with = |v: Option<&str>| {
            let mut r = Request::new(());
            if let Some(v) = v {
                r.metadata_mut().insert("authorization", v.parse().unwrap());
            }
            check(r).map(drop).map_err(|s| s.code())
        };
        assert_eq!(with(Some("Bearer s3cret-token-0123456789")), Ok(()));
        assert_eq!(
            with(Some("Bearer s3cret-token-012345678")),
            Err(tonic::Code::Unauthenticated)
        );
        assert_eq!(with(None), Err(tonic::Code::Unauthenticated));
    }

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
    }
}
