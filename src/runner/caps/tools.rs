//! Toolchains on the daemon's PATH and their versions, and Nix's version: found by a PATH
//! lookup, then asked for their version, all at once.
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::join_all;

use super::{command, failure, NixCap, Runner, Tool};
use crate::supervisor::reaper::Captured;

/// The toolchains reported, and the arguments that make each print its version.
pub(super) const TOOLS: &[(&str, &[&str])] = &[
    ("go", &["version"]),
    ("python3", &["--version"]),
    ("node", &["--version"]),
    ("rustc", &["--version"]),
    ("cargo", &["--version"]),
    // Prints to stderr.
    ("java", &["-version"]),
    ("gcc", &["--version"]),
    ("git", &["--version"]),
    ("make", &["--version"]),
];

/// Why Nix is not available when it is not on the PATH.
pub(super) const NIX_MISSING: &str = "nix is not installed: apt-get install nix-bin (see README)";

/// Every tool of `TOOLS`, in order: where it is on `path` (a PATH value) and its version.
pub(super) async fn probe<R: Runner>(runner: &R, timeout: Duration, path: &OsStr) -> Vec<Tool> {
    let found = lookup(path, TOOLS.iter().map(|(name, _)| *name)).await;
    let probes = TOOLS
        .iter()
        .zip(found)
        .map(|(&(name, args), at)| async move {
            let version = match &at {
                Some(at) => version_of(runner, timeout, at, args).await,
                None => None,
            };
            Tool {
                name: name.to_string(),
                path: at,
                version,
            }
        });
    join_all(probes).await
}

/// Whether `nix` is on `path` and answers `nix --version`.
pub(super) async fn nix<R: Runner>(runner: &R, timeout: Duration, path: &OsStr) -> NixCap {
    let Some(at) = lookup(path, ["nix"]).await.pop().flatten() else {
        return NixCap {
            reason: NIX_MISSING.to_string(),
            ..NixCap::default()
        };
    };
    let unavailable = |reason: String| NixCap {
        reason,
        ..NixCap::default()
    };
    match runner
        .run_probe(command(&at, &["--version"]), timeout)
        .await
    {
        Ok(out) if out.success() => NixCap {
            available: true,
            version: version_in(&out).unwrap_or_default(),
            reason: String::new(),
        },
        Ok(out) => unavailable(format!("`{} --version` {}", at.display(), failure(&out))),
        Err(e) => unavailable(e.to_string()),
    }
}

/// Where each of `names` is on `path`, in order; stats files, so off the async workers.
pub(super) async fn lookup<'a>(
    path: &OsStr,
    names: impl IntoIterator<Item = &'a str>,
) -> Vec<Option<PathBuf>> {
    let path: OsString = path.to_owned();
    let names: Vec<String> = names.into_iter().map(str::to_string).collect();
    let count = names.len();
    tokio::task::spawn_blocking(move || names.iter().map(|n| which(&path, n)).collect())
        .await
        .unwrap_or_else(|_| vec![None; count])
}

/// The first executable file `name` in the directories of `path`, as a shell finds it. Empty
/// entries (which a shell reads as the working directory) are skipped: the daemon's working
/// directory is not a place to find toolchains in.
pub(super) fn which(path: &OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(p: &Path) -> bool {
    // `metadata` follows symlinks: toolchain managers (rustup, pyenv, alternatives) link.
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Run `at args` and read its version; `None` when it fails or does not answer in time.
async fn version_of<R: Runner>(
    runner: &R,
    timeout: Duration,
    at: &Path,
    args: &[&str],
) -> Option<String> {
    match runner.run_probe(command(at, args), timeout).await {
        // A failing command's output is an error message (a pyenv shim without a Python says
        // which versions would have one), not a version.
        Ok(out) if out.success() => version_in(&out),
        Ok(out) => {
            tracing::debug!(tool = %at.display(), "version probe {}", failure(&out));
            None
        }
        Err(e) => {
            tracing::debug!(tool = %at.display(), error = %e, "version probe failed");
            None
        }
    }
}

/// How many non-empty lines of each stream are searched for a version: enough to get past a
/// notice such as Java's `Picked up JAVA_TOOL_OPTIONS`, few enough not to reach a copyright.
const LINES_SEARCHED: usize = 3;

/// The version a tool printed: the first version-looking token of the first lines of stdout,
/// then of stderr (`java -version` prints there); else its first line as it is.
fn version_in(out: &Captured) -> Option<String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = first_lines(&stdout).chain(first_lines(&stderr)).collect();
    lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        .find_map(version_token)
        .map(str::to_string)
        .or_else(|| lines.first().map(|l| crate::error::clip(l)))
}

fn first_lines(s: &str) -> impl Iterator<Item = &str> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(LINES_SEARCHED)
}

/// The version in one word of a version line, when it looks like one: digits and dots (at
/// least two numbers), then letters, digits or `_` (`3.13.0rc1`, `1.8.0_392`), after leading
/// letters (`go1.19.8`, `v20.1.0`) and quotes or parentheses. A `-` or `+` ends it: what
/// follows is a distribution's build (`12.2.0-14+deb12u1`, `17.0.9+9`).
fn version_token(word: &str) -> Option<&str> {
    let w = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let w = w.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let b = w.as_bytes();
    let digits = |from: usize| from + b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut end = digits(0);
    if end == 0 {
        return None;
    }
    let mut numbers = 1;
    while b.get(end) == Some(&b'.') {
        let next = digits(end + 1);
        if next == end + 1 {
            break;
        }
        end = next;
        numbers += 1;
    }
    if numbers < 2 {
        return None;
    }
    end += b[end..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    Some(&w[..end])
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::fake::{Fake, Reply};
    use super::*;
    use crate::supervisor::reaper::Ended;

    fn printed(stdout: &str, stderr: &str) -> Captured {
        Captured {
            ended: Ended::Code(0),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn versions_are_read_from_what_each_tool_prints() {
        let cases = [
            ("go version go1.19.8 linux/amd64\n", "", "1.19.8"),
            ("go version go1.22rc1 darwin/arm64\n", "", "1.22rc1"),
            ("Python 3.11.2\n", "", "3.11.2"),
            ("", "Python 2.7.18\n", "2.7.18"),
            ("v20.20.2\n", "", "20.20.2"),
            ("rustc 1.85.0 (4d91de4e4 2025-02-17)\n", "", "1.85.0"),
            ("cargo 1.85.0 (d73d2caf9 2024-12-31)\n", "", "1.85.0"),
            (
                "",
                "openjdk version \"17.0.9\" 2023-10-17\nOpenJDK Runtime Environment (build 17.0.9+9)\n",
                "17.0.9",
            ),
            (
                "",
                "Picked up JAVA_TOOL_OPTIONS: -Xmx1g\nopenjdk version \"1.8.0_392\"\n",
                "1.8.0_392",
            ),
            (
                "gcc (Debian 12.2.0-14+deb12u1) 12.2.0\nCopyright (C) 2022 Free Software Foundation, Inc.\n",
                "",
                "12.2.0",
            ),
            (
                "gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0\n",
                "",
                "11.4.0",
            ),
            ("git version 2.47.3\n", "", "2.47.3"),
            ("GNU Make 4.3\nBuilt for x86_64-pc-linux-gnu\n", "", "4.3"),
            ("nix (Nix) 2.18.1\n", "", "2.18.1"),
            // No version-looking word: the first line as it is.
            ("\n  tool, development build\nmore\n", "", "tool, development build"),
        ];
        for (stdout, stderr, want) in cases {
            let got = version_in(&printed(stdout, stderr));
            assert_eq!(got.as_deref(), Some(want), "{stdout:?} {stderr:?}");
        }
        assert_eq!(version_in(&printed("", "")), None);
    }

    #[test]
    fn words_that_are_not_versions_are_skipped() {
        for word in [
            "x86_64",
            "2025-04-15",
            "linux/amd64",
            "(Debian",
            "1",
            "v2",
            "-Xmx1g",
            ".5",
            "",
        ] {
            assert_eq!(version_token(word), None, "{word}");
        }
        assert_eq!(version_token("\"17.0.9\""), Some("17.0.9"));
        assert_eq!(version_token("1.2.3.rc1"), Some("1.2.3"));
    }

    /// A PATH of one temporary directory holding executables named `names`.
    fn path_with(names: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for name in names {
            let p = dir.path().join(name);
            std::fs::write(&p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        // Not executable: not found.
        std::fs::write(dir.path().join("node"), "").unwrap();
        dir
    }

    #[test]
    fn which_finds_the_first_executable_and_skips_empty_entries() {
        let a = path_with(&["go"]);
        let b = path_with(&["go", "git"]);
        let path =
            std::env::join_paths(["", a.path().to_str().unwrap(), b.path().to_str().unwrap()])
                .unwrap();
        assert_eq!(which(&path, "go"), Some(a.path().join("go")));
        assert_eq!(which(&path, "git"), Some(b.path().join("git")));
        assert_eq!(which(&path, "node"), None);
        assert_eq!(which(&path, "make"), None);
    }

    #[tokio::test]
    async fn tools_report_path_and_version_and_absent_ones_are_not_run() {
        let dir = path_with(&["go", "java", "python3", "gcc"]);
        let fake = Fake::with(&[
            (
                "go",
                Reply::Prints {
                    code: 0,
                    stdout: "go version go1.19.8 linux/amd64\n",
                    stderr: "",
                },
            ),
            (
                "java",
                Reply::Prints {
                    code: 0,
                    stdout: "",
                    stderr: "openjdk version \"17.0.9\" 2023-10-17\n",
                },
            ),
            ("python3", Reply::Hangs),
            (
                "gcc",
                Reply::Prints {
                    code: 1,
                    stdout: "",
                    stderr: "gcc: fatal error\n",
                },
            ),
        ]);
        let tools = probe(&fake, Duration::from_secs(1), dir.path().as_os_str()).await;
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
        let want: Vec<&str> = TOOLS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, want);
        let tool = |name: &str| tools.iter().find(|t| t.name == name).unwrap();
        assert_eq!(tool("go").path, Some(dir.path().join("go")));
        assert_eq!(tool("go").version.as_deref(), Some("1.19.8"));
        assert_eq!(tool("java").version.as_deref(), Some("17.0.9"));
        // Timed out: where it is, and no version.
        assert!(tool("python3").found());
        assert_eq!(tool("python3").version, None);
        // Failed: no version from its error message.
        assert!(tool("gcc").found());
        assert_eq!(tool("gcc").version, None);
        for absent in ["node", "rustc", "cargo", "git", "make"] {
            assert_eq!(tool(absent).path, None, "{absent}");
            assert_eq!(tool(absent).version, None, "{absent}");
        }
        let mut ran = fake.ran();
        ran.sort();
        assert_eq!(
            ran,
            [
                "gcc --version",
                "go version",
                "java -version",
                "python3 --version"
            ]
        );
    }

    #[tokio::test]
    async fn nix_is_available_with_its_version_or_says_why_not() {
        let timeout = Duration::from_secs(1);
        let empty = path_with(&[]);
        let missing = nix(&Fake::default(), timeout, empty.path().as_os_str()).await;
        assert!(!missing.available);
        assert_eq!(missing.reason, NIX_MISSING);

        let dir = path_with(&["nix"]);
        let path = dir.path().as_os_str();
        let ok = Fake::with(&[(
            "nix",
            Reply::Prints {
                code: 0,
                stdout: "nix (Nix) 2.18.1\n",
                stderr: "",
            },
        )]);
        let found = nix(&ok, timeout, path).await;
        assert!(found.available && found.reason.is_empty(), "{found:?}");
        assert_eq!(found.version, "2.18.1");
        assert_eq!(ok.ran(), ["nix --version"]);

        let broken = Fake::with(&[(
            "nix",
            Reply::Prints {
                code: 1,
                stdout: "",
                stderr: "error: cannot open /nix/var\n",
            },
        )]);
        let failed = nix(&broken, timeout, path).await;
        assert!(!failed.available);
        assert!(
            failed
                .reason
                .ends_with("--version` exited with code 1: error: cannot open /nix/var"),
            "{}",
            failed.reason
        );

        let hung = nix(&Fake::with(&[("nix", Reply::Hangs)]), timeout, path).await;
        assert!(!hung.available);
        assert!(
            hung.reason.contains("did not finish within"),
            "{}",
            hung.reason
        );
    }
}
