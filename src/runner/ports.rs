//! Free TCP ports for `RunnerService.FindFreePort`: a port is returned only when a listener can
//! bind it now, and it is then held for a while so that no other call returns it before the
//! caller's program binds it.
use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;

use crate::error::{quote, Error, Result};

/// How long a returned port is held.
pub const DEFAULT_HOLD: Duration = Duration::from_secs(10);
/// Most ports held at once; beyond it a call waits for holds to expire.
pub const DEFAULT_MAX_HELD: usize = 4096;
/// How many times a kernel-chosen port that is held is chosen again.
const ANY_ATTEMPTS: usize = 64;

/// Finds free ports and holds those it returned.
pub struct Ports {
    hold: Duration,
    max_held: usize,
    /// Port → when its hold ends. By port alone: a program given port 8000 on 127.0.0.1
    /// conflicts with one given 8000 on 0.0.0.0.
    held: Mutex<HashMap<u16, Instant>>,
}

impl Default for Ports {
    fn default() -> Self {
        Ports::new(DEFAULT_HOLD, DEFAULT_MAX_HELD)
    }
}

impl Ports {
    /// Ports held for `hold` after they are returned, at most `max_held` at once.
    pub fn new(hold: Duration, max_held: usize) -> Self {
        Ports {
            hold,
            max_held,
            held: Mutex::new(HashMap::new()),
        }
    }

    /// A TCP port free on `address` ("" for 127.0.0.1) in `min..=max` (both 0: any port the
    /// kernel gives), with the address and the time its hold ends. The range is `u32` as the
    /// request carries it, and checked here. Binds sockets, up to one per port of the range: a
    /// caller on an async worker runs it with `spawn_blocking`.
    pub fn find(&self, address: &str, min: u32, max: u32) -> Result<(IpAddr, u16, SystemTime)> {
        let ip = parse_address(address)?;
        let port = match parse_range(min, max)? {
            None => self.any(ip)?,
            Some((min, max)) => self.in_range(ip, min, max)?,
        };
        Ok((ip, port, SystemTime::now() + self.hold))
    }

    /// A port the kernel chooses. One it chooses may be held (its listener closed; the
    /// program has not bound it yet): keep that listener open while asking again, so the
    /// kernel chooses another.
    fn any(&self, ip: IpAddr) -> Result<u16> {
        let mut kept = Vec::new();
        for _ in 0..ANY_ATTEMPTS {
            let listener = TcpListener::bind((ip, 0)).map_err(|e| bind_error(ip, 0, e))?;
            let port = listener
                .local_addr()
                .map_err(|e| Error::io(format!("read the port bound on {ip}"), e))?
                .port();
            if self.claim(port)? {
                return Ok(port);
            }
            kept.push(listener);
        }
        Err(Error::ResourceExhausted(format!(
            "no free port on {ip}: the ports the kernel gave are held; try again within {} s",
            self.hold.as_secs().max(1)
        )))
    }

    /// A port of `min..=max`, trying each from a random start so that callers spread out.
    fn in_range(&self, ip: IpAddr, min: u16, max: u16) -> Result<u16> {
        let count = u32::from(max) - u32::from(min) + 1;
        let start = rand::rng().random_range(0..count);
        let mut refused = None;
        for i in 0..count {
            let port = (u32::from(min) + (start + i) % count) as u16;
            if self.is_held(port) {
                continue;
            }
            // std sets SO_REUSEADDR, as servers do, so a port whose connections linger in
            // TIME_WAIT counts as free (the program will bind it the same way); a listener, on
            // this address or the wildcard, makes it taken.
            match TcpListener::bind((ip, port)) {
                Ok(listener) => {
                    // Claimed while bound, so no other call can test-bind it in between.
                    let claimed = self.claim(port)?;
                    drop(listener);
                    if claimed {
                        return Ok(port);
                    }
                }
                Err(e) if e.kind() == ErrorKind::AddrInUse => {}
                // Ports below 1024 need CAP_NET_BIND_SERVICE: not free for us, say so below.
                Err(e) if e.kind() == ErrorKind::PermissionDenied => refused = Some(e),
                Err(e) => return Err(bind_error(ip, port, e)),
            }
        }
        let why = match refused {
            Some(e) => format!("; binding some was refused: {e}"),
            None => String::new(),
        };
        Err(Error::ResourceExhausted(format!(
            "no free port on {ip} in {min}-{max}: all are in use or held (held ports are free \
             again within {} s){why}",
            self.hold.as_secs().max(1)
        )))
    }

    fn is_held(&self, port: u16) -> bool {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.get(&port).is_some_and(|until| *until > Instant::now())
    }

    /// Hold `port` unless it is held already (false). Expired holds are dropped first, which
    /// keeps the map at most `max_held` long.
    fn claim(&self, port: u16) -> Result<bool> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        held.retain(|_, until| *until > now);
        if held.contains_key(&port) {
            return Ok(false);
        }
        if held.len() >= self.max_held {
            let first_free = held.values().min().map_or(Duration::ZERO, |u| *u - now);
            return Err(Error::ResourceExhausted(format!(
                "too many ports held ({}); wait {} s",
                held.len(),
                first_free.as_secs() + 1
            )));
        }
        held.insert(port, now + self.hold);
        Ok(true)
    }
}

/// The address to bind: "" is 127.0.0.1; an IPv6 address may come in brackets.
fn parse_address(address: &str) -> Result<IpAddr> {
    if address.is_empty() {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let bare = address
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(address);
    bare.parse().map_err(|_| {
        Error::invalid(
            "address",
            format!(
                "{} is not an IP address: give one such as 127.0.0.1, 0.0.0.0 or ::1 (no host \
                 name, no port), or leave it empty for 127.0.0.1",
                quote(address)
            ),
        )
    })
}

/// `None` for any port (both 0), else the range, checked: a 0 bound alone is the widest
/// unprivileged one (1024 below, 65535 above), as the proto documents.
fn parse_range(min: u32, max: u32) -> Result<Option<(u16, u16)>> {
    let (min, max) = match (min, max) {
        (0, 0) => return Ok(None),
        (0, max) => (1024.min(max), max),
        (min, 0) => (min, 65535),
        range => range,
    };
    let port = |field: &str, n: u32| {
        u16::try_from(n)
            .map_err(|_| Error::invalid(field, format!("{n} is not a port: ports are 1 to 65535")))
    };
    let (lo, hi) = (port("min_port", min)?, port("max_port", max)?);
    if hi < lo {
        return Err(Error::invalid(
            "max_port",
            format!("{hi} is below min_port {lo}"),
        ));
    }
    Ok(Some((lo, hi)))
}

/// A bind error other than "in use": the address is not this host's, or the OS refused.
fn bind_error(ip: IpAddr, port: u16, e: std::io::Error) -> Error {
    if e.kind() == ErrorKind::AddrNotAvailable {
        return Error::FailedPrecondition(format!(
            "{ip} is not an address of this host ({e}); give one of its addresses, 127.0.0.1 or \
             0.0.0.0"
        ));
    }
    Error::io(format!("bind {ip} port {port}"), e)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn two_calls_never_return_the_same_port() {
        let ports = Ports::default();
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let (ip, port, until) = ports.find("", 0, 0).unwrap();
            assert_eq!(ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(until > SystemTime::now());
            assert!(seen.insert(port), "{port} returned twice");
        }
        // From a narrow range too, where a random start often repeats.
        let base = u32::from(free_port().saturating_sub(100).max(1024));
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let (_, port, _) = ports.find("127.0.0.1", base, base + 199).unwrap();
            assert!((base..=base + 199).contains(&u32::from(port)));
            assert!(seen.insert(port), "{port} returned twice");
        }
    }

    #[test]
    fn a_port_with_a_listener_is_not_free() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = u32::from(listener.local_addr().unwrap().port());
        let err = Ports::default().find("", port, port).unwrap_err();
        assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
        assert!(err.to_string().contains(&format!("{port}-{port}")), "{err}");
    }

    #[test]
    fn a_returned_port_is_held() {
        let ports = Ports::default();
        let port = free_port();
        let p = u32::from(port);
        let (_, got, _) = ports.find("127.0.0.1", p, p).unwrap();
        assert_eq!(got, port);
        let err = ports.find("127.0.0.1", p, p).unwrap_err();
        assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
        // Held by port, whatever the address.
        assert!(ports.find("0.0.0.0", p, p).is_err());
    }

    #[test]
    fn holds_are_bounded_and_expire() {
        let ports = Ports::new(Duration::from_secs(60), 2);
        ports.find("", 0, 0).unwrap();
        ports.find("", 0, 0).unwrap();
        let err = ports.find("", 0, 0).unwrap_err();
        assert!(matches!(err, Error::ResourceExhausted(_)), "{err}");
        assert!(
            err.to_string()
                .starts_with("too many ports held (2); wait "),
            "{err}"
        );

        // Expired holds are dropped, so a short hold never fills the map.
        let ports = Ports::new(Duration::ZERO, 1);
        let port = u32::from(free_port());
        for _ in 0..5 {
            ports.find("", port, port).unwrap();
        }
    }

    #[test]
    fn bad_input_names_its_field() {
        let ports = Ports::default();
        let cases = [
            ("localhost", 0, 0, "address"),
            ("127.0.0.1:80", 0, 0, "address"),
            ("300.1.1.1", 0, 0, "address"),
            ("", 70000, 70001, "min_port"),
            ("", 9000, 65536, "max_port"),
            ("", 9001, 9000, "max_port"),
        ];
        for (address, min, max, field) in cases {
            match ports.find(address, min, max) {
                Err(Error::InvalidArgument { field: f, .. }) => {
                    assert_eq!(f, field, "{address} {min} {max}")
                }
                other => panic!("{address} {min} {max}: {other:?}"),
            }
        }
        // One bound alone: the other is the widest unprivileged one.
        assert!(ports.find("", 0, 40000).unwrap().1 >= 1024);
        assert!(ports.find("", 40000, 0).unwrap().1 >= 40000);
        for ok in ["[::1]", "::1", "0.0.0.0"] {
            match ports.find(ok, 0, 0) {
                Ok(_) => {}
                // A host without IPv6 cannot bind ::1, which is not the address's fault.
                Err(Error::FailedPrecondition(_)) if ok.contains(':') => {}
                Err(e) => panic!("{ok}: {e}"),
            }
        }
    }

    #[test]
    fn an_address_not_of_this_host_is_a_failed_precondition() {
        // 192.0.2.0/24 is TEST-NET-1, documentation only: no host has it.
        let err = Ports::default().find("192.0.2.1", 0, 0).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        assert!(err.to_string().contains("192.0.2.1"), "{err}");
    }
}
