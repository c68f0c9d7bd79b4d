//! Which versions a request wants: an exact semver, a range, or `latest`, and the packages they
//! are asked of (`publisher/name`). Pure; the `semver` crate does the matching.
use semver::{Version, VersionReq};

use crate::error::{quote, Error, Result};

/// A plugin package: `publisher/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Package {
    pub publisher: String,
    pub name: String,
}

impl Package {
    /// `publisher/name`, each part as a plugin name (1 to 64 of `[A-Za-z0-9._-]`, starting with
    /// a letter or digit), so that both are safe as path components, OCI repository parts and
    /// Nix attribute names.
    pub fn parse(field: &str, s: &str) -> Result<Package> {
        let Some((publisher, name)) = s.split_once('/') else {
            return Err(Error::invalid(
                field,
                format!(
                    "{} is not a package: write publisher/name (e.g. acme/kv)",
                    quote(s)
                ),
            ));
        };
        for (part, what) in [(publisher, "publisher"), (name, "name")] {
            let ok = !part.is_empty()
                && part.len() <= 64
                && part.as_bytes()[0].is_ascii_alphanumeric()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(Error::invalid(
                    field,
                    format!(
                        "the {what} in {} must be 1 to 64 of [A-Za-z0-9._-], starting with a \
                         letter or digit",
                        quote(s)
                    ),
                ));
            }
        }
        Ok(Package {
            publisher: publisher.into(),
            name: name.into(),
        })
    }
}

impl std::fmt::Display for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.publisher, self.name)
    }
}

/// The versions a request accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// The highest release (no pre-release).
    Latest,
    /// This version only.
    Exact(Version),
    /// Any version the range matches; semver's rule for pre-releases (only those of a version
    /// the range names, e.g. `>=2.0.0-rc.0`).
    Range(VersionReq),
}

impl Want {
    /// `latest` (or empty), an exact version (`1.2.0`, `v1.2.0`), or a range (`^1.2`,
    /// `>=1.0, <2`, `1.x`). A bare `1.2` is a range (`^1.2`), as in Cargo.
    pub fn parse(field: &str, s: &str) -> Result<Want> {
        let s = s.trim();
        if s.is_empty() || s == "latest" {
            return Ok(Want::Latest);
        }
        if let Ok(v) = Version::parse(s.strip_prefix('v').unwrap_or(s)) {
            return Ok(Want::Exact(v));
        }
        VersionReq::parse(s).map(Want::Range).map_err(|e| {
            Error::invalid(
                field,
                format!(
                    "{} is not a version, a range (^1.2, >=1.0, <2) or latest: {e}",
                    quote(s)
                ),
            )
        })
    }

    pub fn matches(&self, v: &Version) -> bool {
        match self {
            Want::Latest => v.pre.is_empty(),
            Want::Exact(want) => v == want,
            Want::Range(req) => req.matches(v),
        }
    }

    /// The highest of `versions` this accepts.
    pub fn best<'a>(&self, versions: impl IntoIterator<Item = &'a Version>) -> Option<&'a Version> {
        versions.into_iter().filter(|v| self.matches(v)).max()
    }
}

impl std::fmt::Display for Want {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Want::Latest => f.write_str("latest"),
            Want::Exact(v) => write!(f, "{v}"),
            Want::Range(r) => write!(f, "{r}"),
        }
    }
}

/// The versions among `tags` (a registry's tags, a directory's names): those that parse as
/// semver (with or without a leading `v`), others ignored (`latest`, `main`, a digest).
pub fn versions_of<'a>(tags: impl IntoIterator<Item = &'a str>) -> Vec<Version> {
    tags.into_iter()
        .filter_map(|t| Version::parse(t.strip_prefix('v').unwrap_or(t)).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn packages_are_publisher_slash_name() {
        let p = Package::parse("package", "acme/kv").unwrap();
        assert_eq!((p.publisher.as_str(), p.name.as_str()), ("acme", "kv"));
        assert_eq!(p.to_string(), "acme/kv");
        for bad in [
            "kv",
            "/kv",
            "acme/",
            "acme/kv/x",
            "../kv",
            "acme/.kv",
            "a b/kv",
        ] {
            let e = Package::parse("package", bad).unwrap_err();
            assert!(e.to_string().starts_with("package:"), "{bad}: {e}");
        }
    }

    #[test]
    fn latest_is_the_highest_release_and_ranges_follow_semver() {
        let all = versions_of(["1.0.0", "1.2.0", "v1.10.1", "2.0.0-rc.1", "latest", "main"]);
        assert_eq!(all.len(), 4);
        let best = |s: &str| Want::parse("version", s).unwrap().best(&all).cloned();
        assert_eq!(best("latest"), Some(v("1.10.1")));
        assert_eq!(best(""), Some(v("1.10.1")));
        assert_eq!(best("^1.2"), Some(v("1.10.1")));
        assert_eq!(best(">=1.0, <1.5"), Some(v("1.2.0")));
        assert_eq!(best("1.0.0"), Some(v("1.0.0")));
        assert_eq!(best("v1.2.0"), Some(v("1.2.0")));
        assert_eq!(best("2.0.0-rc.1"), Some(v("2.0.0-rc.1")));
        assert_eq!(best(">=2.0.0-rc.0"), Some(v("2.0.0-rc.1")));
        assert_eq!(best("^3"), None);
        let e = Want::parse("version", "one.two").unwrap_err();
        assert!(e.to_string().starts_with("version:"), "{e}");
    }
}
