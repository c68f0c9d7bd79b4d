//! The plugin's handshake line: hashicorp/go-plugin's `CORE|APP|NETWORK|ADDRESS|PROTOCOL[|CERT]`
//! and codefly's `VERSION|ENDPOINT`, parsed, and the versions it announces checked against the
//! host's. Pure: no I/O, no clock.
//!
//! A line either parses, or is `Malformed`; a malformed line is *noise* (`Malformed::is_noise`)
//! when it does not even start like a handshake (a number, then `|`): the loader keeps such lines
//! in the plugin's log and goes on waiting, because stdout noise before the handshake is
//! go-plugin's most common complaint. Any other malformed line is a handshake gone wrong, and
//! fails the load at once instead of at the timeout.
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::error::{clip, quote};

/// go-plugin's core protocol version, the only one there is (`plugin.CoreProtocolVersion`).
pub const CORE_PROTOCOL_VERSION: u32 = 1;

/// tend's own magic cookie, set in a plugin's environment when the Load names none
/// (`PluginSpec.magic_cookie_key`/`_value`, as `loader.proto` documents them). Like go-plugin's,
/// it is not a secret: it only lets a plugin started by hand say that it is a plugin.
pub const MAGIC_COOKIE_KEY: &str = "TEND_PLUGIN_MAGIC_COOKIE";
/// The value of `MAGIC_COOKIE_KEY`.
pub const MAGIC_COOKIE_VALUE: &str = "tend-plugin-7b3e0f1c9d2a4e85";

/// The app protocol versions offered when a Load names none (`PluginSpec.protocol_versions`).
pub const DEFAULT_PROTOCOL_VERSIONS: &[u32] = &[1];

/// Longest unix socket path, in bytes: Linux's `sockaddr_un.sun_path` is 108 bytes, one of them
/// the terminating NUL. A longer path cannot be connected to (go-plugin's users meet this as a
/// bind error in a deep `$TMPDIR`), so the loader hands out a short `PLUGIN_UNIX_SOCKET_DIR`.
pub const UNIX_PATH_MAX: usize = 107;

/// A go-plugin CERT field this long or shorter is not a certificate: go-plugin itself ignores it
/// ("unused extra data returned from some older implementations", `client.go`).
const CERT_MIN_LEN: usize = 50;

/// Which format the line was in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `CORE|APP|NETWORK|ADDRESS|PROTOCOL[|CERT]`.
    GoPlugin,
    /// `VERSION|PORT`, `VERSION|unix:/path` or `VERSION|dns:///IP:PORT`.
    Codefly,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::GoPlugin => "go-plugin",
            Dialect::Codefly => "codefly",
        })
    }
}

/// Where the plugin serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// A unix socket at this absolute path (at most `UNIX_PATH_MAX` bytes).
    Unix(PathBuf),
    /// TCP at this IP address and port (never port 0). Host names are refused: a plugin says
    /// where it listens, and go-plugin prints a `net.Addr`, which is always an IP address.
    Tcp(SocketAddr),
}

impl Network {
    /// go-plugin's name of the network: `unix` or `tcp`.
    pub fn name(&self) -> &'static str {
        match self {
            Network::Unix(_) => "unix",
            Network::Tcp(_) => "tcp",
        }
    }

    /// The address as `PluginInfo.address` shows it: the socket path, or `IP:PORT`.
    pub fn address(&self) -> String {
        match self {
            Network::Unix(path) => path.display().to_string(),
            Network::Tcp(addr) => addr.to_string(),
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name(), self.address())
    }
}

/// The RPC protocol the plugin serves. gRPC is the only one tend speaks: go-plugin's net/rpc
/// (`netrpc`, its default when the field is missing) is refused when parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
}

/// A parsed handshake line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// go-plugin's core protocol version, as printed (checked by `check_core_version`); 0 for
    /// codefly's dialect, which has none.
    pub core: u32,
    /// The app protocol version the plugin chose (go-plugin's APP, codefly's VERSION), checked
    /// by `check_app_version`.
    pub app: u32,
    /// Where to dial it.
    pub network: Network,
    /// Always gRPC.
    pub protocol: Protocol,
    /// go-plugin's AutoMTLS server certificate (base64 DER, as printed), when the line carried
    /// one. Unsupported for now: tend never sets `PLUGIN_CLIENT_CERT`, so a plugin has no reason
    /// to send one, and `unsupported` says so when it does.
    pub cert: Option<String>,
    /// Which format it was in.
    pub dialect: Dialect,
}

impl Handshake {
    /// Why tend cannot use this handshake although it parsed; `None` when it can.
    pub fn unsupported(&self) -> Option<String> {
        self.cert.as_ref().map(|_| {
            "the plugin sent a TLS certificate (go-plugin AutoMTLS); tend does not speak TLS to \
             plugins yet: load it without AutoMTLS (it is on only when PLUGIN_CLIENT_CERT is set)"
                .to_string()
        })
    }
}

/// A line that is not a usable handshake line: the line, quoted and clipped, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {line}")]
pub struct Malformed {
    /// The line as printed, quoted (`"…"`, control characters escaped) and clipped.
    pub line: String,
    /// What is wrong with it.
    pub reason: Reason,
}

impl Malformed {
    /// True when the line does not start like a handshake line at all (a log line, an empty line,
    /// colour codes): the loader keeps it in the log and goes on waiting for the real one.
    pub fn is_noise(&self) -> bool {
        self.reason == Reason::NotAHandshake
    }
}

/// What is wrong with a handshake line. Quoted parts are clipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// Not a number then `|`: noise, not a handshake attempt.
    #[error(
        "not a handshake line (one starts with a version number and \"|\", as in \
         1|1|unix|/path.sock|grpc)"
    )]
    NotAHandshake,
    /// Neither 2 fields (codefly) nor 4 to 6 (go-plugin).
    #[error(
        "{0} \"|\"-separated fields; a handshake line has 2 (codefly's VERSION|ENDPOINT) or 4 to \
         6 (go-plugin's CORE|APP|NETWORK|ADDRESS|PROTOCOL[|CERT])"
    )]
    FieldCount(usize),
    /// A version field is not a decimal number that fits in 32 bits.
    #[error("{field} {value} is not a version number")]
    BadVersion { field: &'static str, value: String },
    /// go-plugin's NETWORK is neither `unix` nor `tcp`.
    #[error("network {0} is not \"unix\" or \"tcp\"")]
    UnknownNetwork(String),
    /// A unix socket path that is empty or relative (to a working directory the host does not
    /// share), or an abstract one (`@name`).
    #[error("unix socket path {0} is not an absolute path")]
    RelativeUnixPath(String),
    /// A unix socket path longer than `UNIX_PATH_MAX`.
    #[error(
        "unix socket path {path} is {len} bytes, over the limit of {UNIX_PATH_MAX} \
         (sockaddr_un.sun_path); bind the socket in PLUGIN_UNIX_SOCKET_DIR, which is short"
    )]
    UnixPathTooLong { path: String, len: usize },
    /// go-plugin's tcp ADDRESS is not `IP:PORT` with a port from 1 to 65535.
    #[error("tcp address {0} is not IP:PORT with a port from 1 to 65535")]
    BadTcpAddress(String),
    /// codefly's ENDPOINT is none of its three forms.
    #[error("endpoint {0} is not a port (1 to 65535), unix:/absolute/path or dns:///IP:PORT")]
    BadEndpoint(String),
    /// go-plugin's line without its PROTOCOL field means net/rpc.
    #[error(
        "no PROTOCOL field, which go-plugin reads as net/rpc; tend speaks gRPC only: serve the \
         plugin with GRPCServer (plugin.ServeConfig{{GRPCServer: plugin.DefaultGRPCServer}}) and \
         print \"grpc\""
    )]
    NoProtocol,
    /// A PROTOCOL other than `grpc` (go-plugin's `netrpc`, or anything else).
    #[error(
        "protocol {0} is not \"grpc\"; tend speaks gRPC only (a go-plugin plugin: serve it with \
         GRPCServer: plugin.DefaultGRPCServer)"
    )]
    UnsupportedProtocol(String),
    /// go-plugin's CERT is not base64.
    #[error("CERT field is not base64 (go-plugin AutoMTLS prints a base64 DER certificate)")]
    BadCert,
}

/// Why the versions a handshake announces are not ones the host speaks; both sides named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// go-plugin's core protocol differs.
    #[error(
        "protocol version mismatch: the plugin speaks go-plugin core protocol {plugin}, tend \
         speaks core protocol {host}; the plugin needs to be rebuilt against a go-plugin of core \
         protocol {host}"
    )]
    Core { plugin: u32, host: u32 },
    /// The app version the plugin chose is not one offered.
    #[error(
        "protocol version mismatch: the plugin chose app protocol version {plugin} ({dialect} \
         handshake), the host offered {offered} (PLUGIN_PROTOCOL_VERSIONS={env}); load it with \
         protocol_versions including {plugin}, or use a build of the plugin that speaks one of \
         {offered}",
        offered = versions(offered, ", "),
        env = versions(offered, ",")
    )]
    App {
        plugin: u32,
        offered: Vec<u32>,
        dialect: Dialect,
    },
}

/// `1, 2, 3` (or `none` for an empty list).
fn versions(v: &[u32], sep: &str) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.iter().map(u32::to_string).collect::<Vec<_>>().join(sep)
}

/// Parse one line of the plugin's stdout (with or without its line end; surrounding whitespace
/// is ignored, as go-plugin ignores it).
pub fn parse(line: &str) -> Result<Handshake, Malformed> {
    let malformed = |reason| Malformed {
        line: quote(line),
        reason,
    };
    let trimmed = line.trim();
    let fields: Vec<&str> = trimmed.split('|').collect();
    if fields.len() < 2 || !is_number(fields[0]) {
        return Err(malformed(Reason::NotAHandshake));
    }
    match fields.len() {
        2 => parse_codefly(fields[0], fields[1]),
        4..=6 => parse_go_plugin(&fields),
        n => Err(Reason::FieldCount(n)),
    }
    .map_err(malformed)
}

/// `CORE|APP|NETWORK|ADDRESS[|PROTOCOL[|CERT]]`, as go-plugin's `client.go` reads it.
fn parse_go_plugin(fields: &[&str]) -> Result<Handshake, Reason> {
    let core = version("CORE", fields[0])?;
    let app = version("APP", fields[1])?;
    let network = match fields[2] {
        "unix" => Network::Unix(unix_path(fields[3])?),
        "tcp" => {
            Network::Tcp(ip_port(fields[3]).ok_or_else(|| Reason::BadTcpAddress(quote(fields[3])))?)
        }
        other => return Err(Reason::UnknownNetwork(quote(other))),
    };
    match fields.get(4) {
        None => return Err(Reason::NoProtocol),
        Some(&"grpc") => {}
        Some(other) => return Err(Reason::UnsupportedProtocol(quote(other))),
    }
    let cert = match fields.get(5) {
        Some(c) if c.len() > CERT_MIN_LEN => {
            if !is_base64(c) {
                return Err(Reason::BadCert);
            }
            Some(c.to_string())
        }
        _ => None,
    };
    Ok(Handshake {
        core,
        app,
        network,
        protocol: Protocol::Grpc,
        cert,
        dialect: Dialect::GoPlugin,
    })
}

/// `VERSION|PORT` (TCP on 127.0.0.1), `VERSION|unix:/path`, `VERSION|dns:///IP:PORT`, as
/// codefly's `agents/manager` reads them.
fn parse_codefly(v: &str, endpoint: &str) -> Result<Handshake, Reason> {
    let app = version("VERSION", v)?;
    let bad = || Reason::BadEndpoint(quote(endpoint));
    let network = if is_number(endpoint) {
        match endpoint.parse::<u16>() {
            Ok(port) if port != 0 => {
                Network::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
            }
            _ => return Err(bad()),
        }
    } else if let Some(rest) = endpoint.strip_prefix("unix:") {
        // gRPC's two spellings: `unix:/abs/path` and `unix:///abs/path` (an empty authority).
        let path = rest.strip_prefix("//").unwrap_or(rest);
        Network::Unix(unix_path(path)?)
    } else if let Some(rest) = endpoint.strip_prefix("dns:///") {
        Network::Tcp(ip_port(rest).ok_or_else(bad)?)
    } else {
        return Err(bad());
    };
    Ok(Handshake {
        core: 0,
        app,
        network,
        protocol: Protocol::Grpc,
        cert: None,
        dialect: Dialect::Codefly,
    })
}

/// Only ASCII digits, at least one (no sign, no spaces: go-plugin's `strconv.Atoi` of an
/// untrimmed field refuses those too).
fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn version(field: &'static str, s: &str) -> Result<u32, Reason> {
    match s.parse::<u32>() {
        Ok(v) if is_number(s) => Ok(v),
        _ => Err(Reason::BadVersion {
            field,
            value: quote(s),
        }),
    }
}

fn unix_path(p: &str) -> Result<PathBuf, Reason> {
    if !p.starts_with('/') {
        return Err(Reason::RelativeUnixPath(quote(p)));
    }
    if p.len() > UNIX_PATH_MAX {
        return Err(Reason::UnixPathTooLong {
            path: clip(p),
            len: p.len(),
        });
    }
    Ok(PathBuf::from(p))
}

/// `IP:PORT` or `[IPv6]:PORT` with a port from 1 to 65535.
fn ip_port(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().ok().filter(|a| a.port() != 0)
}

/// Standard base64 (go-plugin encodes with `base64.RawStdEncoding`: no padding; padding is
/// accepted too).
fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len() - body.len() <= 2
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// go-plugin's core version check: it must be `CORE_PROTOCOL_VERSION`. Codefly's dialect has no
/// core version and always passes.
pub fn check_core_version(h: &Handshake) -> Result<(), Mismatch> {
    if h.dialect == Dialect::GoPlugin && h.core != CORE_PROTOCOL_VERSION {
        return Err(Mismatch::Core {
            plugin: h.core,
            host: CORE_PROTOCOL_VERSION,
        });
    }
    Ok(())
}

/// The app version the plugin chose must be one the host offered (`PLUGIN_PROTOCOL_VERSIONS`,
/// after the caller applied `DEFAULT_PROTOCOL_VERSIONS` to an empty list).
pub fn check_app_version(h: &Handshake, offered: &[u32]) -> Result<(), Mismatch> {
    if offered.contains(&h.app) {
        return Ok(());
    }
    Err(Mismatch::App {
        plugin: h.app,
        offered: offered.to_vec(),
        dialect: h.dialect,
    })
}

/// Both checks, core first.
pub fn check_versions(h: &Handshake, offered: &[u32]) -> Result<(), Mismatch> {
    check_core_version(h)?;
    check_app_version(h, offered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ok(line: &str) -> Handshake {
        parse(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    fn err(line: &str) -> Malformed {
        match parse(line) {
            Ok(h) => panic!("{line:?} parsed: {h:?}"),
            Err(e) => e,
        }
    }

    fn tcp(s: &str) -> Network {
        Network::Tcp(s.parse().unwrap())
    }

    #[test]
    fn go_plugin_lines_parse() {
        let h = ok("1|1|unix|/tmp/p.sock|grpc");
        assert_eq!(
            h,
            Handshake {
                core: 1,
                app: 1,
                network: Network::Unix("/tmp/p.sock".into()),
                protocol: Protocol::Grpc,
                cert: None,
                dialect: Dialect::GoPlugin,
            }
        );
        let h = ok("1|3|tcp|127.0.0.1:1234|grpc\n");
        assert_eq!((h.app, &h.network), (3, &tcp("127.0.0.1:1234")));
        assert_eq!(ok("1|2|tcp|[::1]:9|grpc\r\n").network, tcp("[::1]:9"));
        // Surrounding whitespace is ignored, as go-plugin's TrimSpace does.
        assert_eq!(ok("  1|1|unix|/s|grpc \t").network.address(), "/s");
        // A core version other than 1 parses; check_core_version refuses it.
        assert_eq!(ok("2|1|unix|/s|grpc").core, 2);
    }

    #[test]
    fn go_plugin_cert_is_kept_when_long_and_ignored_when_short() {
        let cert = "MIIBszCCAVmgAwIBAgIRAKzQ".repeat(4) + "+/Zz09";
        let h = ok(&format!("1|1|unix|/s|grpc|{cert}"));
        assert_eq!(h.cert.as_deref(), Some(cert.as_str()));
        let why = h.unsupported().expect("a cert is unsupported");
        assert!(
            why.contains("AutoMTLS") && why.contains("PLUGIN_CLIENT_CERT"),
            "{why}"
        );
        // Short extra data is not a certificate (go-plugin ignores it too).
        let h = ok("1|1|unix|/s|grpc|extra");
        assert_eq!((h.cert.as_deref(), h.unsupported()), (None, None));
        let e = err(&format!("1|1|unix|/s|grpc|{}", "!".repeat(60)));
        assert_eq!(e.reason, Reason::BadCert);
    }

    #[test]
    fn codefly_dialects_parse() {
        let h = ok("1|50051");
        assert_eq!(
            h,
            Handshake {
                core: 0,
                app: 1,
                network: tcp("127.0.0.1:50051"),
                protocol: Protocol::Grpc,
                cert: None,
                dialect: Dialect::Codefly,
            }
        );
        let h = ok("2|unix:/tmp/codefly-uds/agent-1234.sock");
        assert_eq!(h.app, 2);
        assert_eq!(
            h.network,
            Network::Unix("/tmp/codefly-uds/agent-1234.sock".into())
        );
        // Paths are taken verbatim, spaces included.
        let h = ok("2|unix:/var/folders/xx/spaces here/agent.sock");
        assert_eq!(
            h.network,
            Network::Unix("/var/folders/xx/spaces here/agent.sock".into())
        );
        assert_eq!(
            ok("2|unix:///run/a.sock").network,
            Network::Unix("/run/a.sock".into())
        );
        assert_eq!(ok("2|dns:///127.0.0.1:7070").network, tcp("127.0.0.1:7070"));
        assert_eq!(ok("2|dns:///[::1]:7070").network, tcp("[::1]:7070"));
        assert_eq!(h.dialect.to_string(), "codefly");
    }

    #[test]
    fn noise_is_malformed_noise_with_the_line_quoted() {
        for line in [
            "",
            "\n",
            "   ",
            "Listening on 127.0.0.1:8080",
            "Listening on unix:/tmp/p.sock|grpc",
            "\u{1b}[32mINFO\u{1b}[0m starting plugin",
            "\u{1b}[0m1|1|unix|/tmp/p.sock|grpc",
            "2024-05-01|12:00|started",
            "1 54321",
            "|1|1|unix|/s|grpc",
            "-1|50051",
            "v1|1|unix|/s|grpc",
        ] {
            let e = err(line);
            assert!(e.is_noise(), "{line:?}: {e}");
            assert_eq!(e.line, quote(line));
            let msg = e.to_string();
            assert!(msg.starts_with("not a handshake line"), "{msg}");
            assert!(msg.ends_with(&quote(line)), "{msg}");
        }
        // Colour codes are shown escaped, never sent raw to a terminal.
        let msg = err("\u{1b}[31merror\u{1b}[0m").to_string();
        assert!(msg.contains(r"\u{1b}[31merror"), "{msg}");
    }

    #[test]
    fn a_long_line_is_quoted_clipped_with_its_size() {
        let line = format!("Listening {}", "x".repeat(10_000));
        let e = err(&line);
        assert!(e.line.ends_with("…(10010 bytes)"), "{}", e.line);
        assert!(e.to_string().len() < 400, "{}", e.to_string().len());
        let line = format!("1|1|unix|/s|{}", "p".repeat(5000));
        let e = err(&line);
        assert!(!e.is_noise());
        assert!(e.to_string().len() < 800, "{}", e.to_string().len());
    }

    #[test]
    fn broken_handshake_lines_are_malformed_and_not_noise() {
        let cases: &[(&str, &str)] = &[
            ("1|1|unix", "3 \"|\"-separated fields"),
            ("1|1|unix|/s|grpc|cert|more", "7 \"|\"-separated fields"),
            ("1|", "endpoint \"\" is not a port"),
            ("1|0", "endpoint \"0\" is not a port"),
            ("1|99999", "endpoint \"99999\" is not a port"),
            ("1|tcp://x:1", "endpoint \"tcp://x:1\""),
            ("1|dns:///localhost:80", "endpoint \"dns:///localhost:80\""),
            (
                "1|unix:rel.sock",
                "unix socket path \"rel.sock\" is not an absolute path",
            ),
            (
                "99999999999|50051",
                "VERSION \"99999999999\" is not a version number",
            ),
            ("1|x|unix|/s|grpc", "APP \"x\" is not a version number"),
            ("1| 1|unix|/s|grpc", "APP \" 1\" is not a version number"),
            (
                "1|1|udp|/s|grpc",
                "network \"udp\" is not \"unix\" or \"tcp\"",
            ),
            (
                "1|1|unix|p.sock|grpc",
                "unix socket path \"p.sock\" is not an absolute path",
            ),
            (
                "1|1|unix|@abstract|grpc",
                "\"@abstract\" is not an absolute path",
            ),
            (
                "1|1|unix||grpc",
                "unix socket path \"\" is not an absolute path",
            ),
            (
                "1|1|tcp|localhost:1234|grpc",
                "tcp address \"localhost:1234\" is not IP:PORT",
            ),
            ("1|1|tcp|127.0.0.1:0|grpc", "tcp address \"127.0.0.1:0\""),
            ("1|1|tcp|127.0.0.1|grpc", "tcp address \"127.0.0.1\""),
            (
                "1|1|unix|/s",
                "no PROTOCOL field, which go-plugin reads as net/rpc",
            ),
            (
                "1|1|unix|/s|netrpc",
                "protocol \"netrpc\" is not \"grpc\"; tend speaks gRPC only",
            ),
            ("1|1|unix|/s|GRPC", "protocol \"GRPC\" is not \"grpc\""),
            ("1|1|unix|/s|", "protocol \"\" is not \"grpc\""),
        ];
        for (line, want) in cases {
            let e = err(line);
            assert!(!e.is_noise(), "{line:?}: {e}");
            let msg = e.to_string();
            assert!(msg.contains(want), "{line:?}: {msg}");
            assert!(msg.ends_with(&quote(line)), "{line:?}: {msg}");
        }
    }

    #[test]
    fn a_unix_path_over_107_bytes_is_refused_with_its_length() {
        let dir = format!("/tmp/{}", "d".repeat(90));
        let fits = format!("{dir}/{}", "s".repeat(UNIX_PATH_MAX - dir.len() - 1));
        assert_eq!(fits.len(), UNIX_PATH_MAX);
        let h = ok(&format!("1|1|unix|{fits}|grpc"));
        assert_eq!(h.network, Network::Unix(Path::new(&fits).into()));
        let long = format!("{fits}x");
        for line in [format!("1|1|unix|{long}|grpc"), format!("2|unix:{long}")] {
            let e = err(&line);
            assert_eq!(
                e.reason,
                Reason::UnixPathTooLong {
                    path: long.clone(),
                    len: 108
                }
            );
            let msg = e.to_string();
            assert!(
                msg.contains("is 108 bytes, over the limit of 107")
                    && msg.contains("PLUGIN_UNIX_SOCKET_DIR"),
                "{msg}"
            );
        }
    }

    #[test]
    fn versions_are_checked_with_both_sides_named() {
        let h = ok("1|3|unix|/s|grpc");
        assert_eq!(check_versions(&h, &[1, 2, 3]), Ok(()));
        let e = check_versions(&h, &[1, 2]).unwrap_err();
        assert_eq!(
            e,
            Mismatch::App {
                plugin: 3,
                offered: vec![1, 2],
                dialect: Dialect::GoPlugin
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains("the plugin chose app protocol version 3 (go-plugin handshake)")
                && msg.contains("the host offered 1, 2 (PLUGIN_PROTOCOL_VERSIONS=1,2)")
                && msg.contains("protocol_versions including 3"),
            "{msg}"
        );
        let msg = check_app_version(&h, &[]).unwrap_err().to_string();
        assert!(msg.contains("the host offered none"), "{msg}");

        let core2 = ok("2|1|unix|/s|grpc");
        let e = check_versions(&core2, DEFAULT_PROTOCOL_VERSIONS).unwrap_err();
        assert_eq!(e, Mismatch::Core { plugin: 2, host: 1 });
        let msg = e.to_string();
        assert!(
            msg.contains("go-plugin core protocol 2, tend speaks core protocol 1"),
            "{msg}"
        );
        // The core check comes first, whatever the app version.
        assert!(matches!(
            check_versions(&ok("0|9|unix|/s|grpc"), &[1]),
            Err(Mismatch::Core { plugin: 0, .. })
        ));

        // Codefly has no core version; its VERSION is the app version.
        let cf = ok("2|unix:/s");
        assert_eq!(check_core_version(&cf), Ok(()));
        assert_eq!(check_versions(&cf, &[1, 2]), Ok(()));
        let msg = check_versions(&ok("1|50051"), &[2])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("app protocol version 1 (codefly handshake), the host offered 2"),
            "{msg}"
        );
    }

    #[test]
    fn network_shows_as_plugin_info_shows_it() {
        let h = ok("1|1|tcp|127.0.0.1:1234|grpc");
        assert_eq!(
            (h.network.name(), h.network.address()),
            ("tcp", "127.0.0.1:1234".into())
        );
        assert_eq!(h.network.to_string(), "tcp:127.0.0.1:1234");
        let h = ok("1|1|unix|/run/p.sock|grpc");
        assert_eq!(h.network.to_string(), "unix:/run/p.sock");
    }
}
