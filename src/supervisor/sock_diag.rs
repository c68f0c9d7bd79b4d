//! The host's listening TCP and bound UDP sockets by inode, through the kernel's sock_diag
//! netlink interface (as `ss` reads them): the kernel filters by state and answers only with
//! those, where reading `/proc/net/tcp` walks the whole socket hash table, which costs
//! milliseconds even when it is empty.
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_SOCK_DIAG: i32 = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 0x2;
const NLMSG_DONE: u16 = 0x3;
const TCP_LISTEN: u32 = 10;
/// A bound UDP socket without a peer.
const TCP_CLOSE: u32 = 7;
/// `struct nlmsghdr`.
const HEADER: usize = 16;
/// `struct inet_diag_msg`: family, state, timer, retrans, the 48-byte socket id, then expires,
/// rqueue, wqueue, uid, inode.
const MESSAGE: usize = 72;

/// Socket inode → (protocol, local address, port), for TCP in LISTEN and UDP bound.
pub type Sockets = HashMap<u64, (&'static str, String, u16)>;

/// Every listening TCP socket and bound UDP socket of the daemon's network namespace.
pub fn sockets() -> io::Result<Sockets> {
    let mut out = HashMap::new();
    for (protocol, number, states) in [
        ("tcp", libc::IPPROTO_TCP as u8, 1u32 << TCP_LISTEN),
        ("udp", libc::IPPROTO_UDP as u8, 1u32 << TCP_CLOSE),
    ] {
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            dump(family, number, states, |inode, address, port| {
                out.insert(inode, (protocol, address, port));
            })?;
        }
    }
    Ok(out)
}

/// Ask for the sockets of one family and protocol in `states`, and hand each to `found`.
fn dump(
    family: u8,
    protocol: u8,
    states: u32,
    mut found: impl FnMut(u64, String, u16),
) -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned from here.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just opened, owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // nlmsghdr, then inet_diag_req_v2: family, protocol, ext, pad, states, a zeroed socket id.
    let mut req = [0u8; HEADER + 56];
    let len = req.len() as u32;
    req[0..4].copy_from_slice(&len.to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[HEADER] = family;
    req[HEADER + 1] = protocol;
    req[HEADER + 4..HEADER + 8].copy_from_slice(&states.to_ne_bytes());
    // SAFETY: a zeroed sockaddr_nl is the kernel as the destination.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as u16;
    // SAFETY: sendto(2) from a live buffer to a valid address of its stated size.
    let sent = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            req.as_ptr().cast(),
            req.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 64 << 10];
    loop {
        // SAFETY: recv(2) into a live buffer of its stated size.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let mut rest = &buf[..n as usize];
        if rest.is_empty() {
            return Ok(());
        }
        while rest.len() >= HEADER {
            let len = u32::from_ne_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
            let kind = u16::from_ne_bytes(rest[4..6].try_into().expect("2 bytes"));
            if len < HEADER || len > rest.len() {
                return Err(io::Error::other("a malformed sock_diag answer"));
            }
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let errno = rest
                        .get(HEADER..HEADER + 4)
                        .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("4 bytes")));
                    return Err(io::Error::from_raw_os_error(-errno));
                }
                _ => {
                    if let Some(m) = rest.get(HEADER..HEADER + MESSAGE) {
                        let (inode, address, port) = parse(m);
                        if inode != 0 {
                            found(inode, address, port);
                        }
                    }
                }
            }
            // Messages are 4-byte aligned.
            let next = (len + 3) & !3;
            rest = rest.get(next..).unwrap_or(&[]);
        }
    }
}

/// An `inet_diag_msg`: the socket's inode, local address and port.
fn parse(m: &[u8]) -> (u64, String, u16) {
    let family = m[0];
    let port = u16::from_be_bytes([m[4], m[5]]);
    let src = &m[8..24];
    let address = if family == libc::AF_INET as u8 {
        Ipv4Addr::new(src[0], src[1], src[2], src[3]).to_string()
    } else {
        let mut b = [0u8; 16];
        b.copy_from_slice(src);
        Ipv6Addr::from(b).to_string()
    };
    let inode = u32::from_ne_bytes(m[68..72].try_into().expect("4 bytes"));
    (u64::from(inode), address, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_and_a_bound_udp_socket_are_found_with_their_inodes() {
        use std::os::fd::AsRawFd;
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let inode = |fd: i32| {
            let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
            let t = link.to_str().unwrap();
            t["socket:[".len()..t.len() - 1].parse::<u64>().unwrap()
        };
        let found = sockets().unwrap();
        assert_eq!(
            found.get(&inode(tcp.as_raw_fd())),
            Some(&(
                "tcp",
                "127.0.0.1".to_string(),
                tcp.local_addr().unwrap().port()
            ))
        );
        assert_eq!(
            found.get(&inode(udp.as_raw_fd())),
            Some(&("udp", "::1".to_string(), udp.local_addr().unwrap().port()))
        );
        // The same as /proc/net says (other tests open sockets meanwhile: only these two).
        let proc = super::super::usage::sockets_from_proc();
        for fd in [tcp.as_raw_fd(), udp.as_raw_fd()] {
            assert_eq!(found.get(&inode(fd)), proc.get(&inode(fd)));
        }
    }
}
