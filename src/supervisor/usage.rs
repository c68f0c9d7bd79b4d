//! What a process tree uses and does, read from `/proc`: kernel state, CPU time, memory, the
//! number of processes, and the sockets it listens on.
//!
//! One `Scan` reads every `/proc/<pid>/stat` once (a `List` of a thousand processes costs one
//! pass, not one per process); trees are then picked out of it: a process's cgroup (everything
//! born there), its process group, what descends from any of those by parent, and what the
//! daemon adopted as a subreaper that carries its marker (a double fork's orphan).
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::process::Process;

/// Where a host process's tree can be found.
#[derive(Debug, Clone)]
pub struct Tree {
    pub pgid: u32,
    pub cgroup: Option<PathBuf>,
    /// The value of the process's marker variable, carried by all it starts.
    pub marker: String,
}

/// The kernel's state letter of a process, named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelState {
    Running,
    Sleeping,
    DiskWait,
    Stopped,
    Zombie,
    Idle,
    Dead,
}

impl KernelState {
    fn from_letter(c: char) -> KernelState {
        match c {
            'R' => KernelState::Running,
            'S' => KernelState::Sleeping,
            'D' => KernelState::DiskWait,
            'T' | 't' => KernelState::Stopped,
            'Z' => KernelState::Zombie,
            'I' => KernelState::Idle,
            _ => KernelState::Dead,
        }
    }
}

/// One process's line of `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy)]
pub struct PidStat {
    pub ppid: u32,
    pub pgid: u32,
    pub state: KernelState,
    /// Clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// Pages.
    pub rss: u64,
}

fn parse_stat(raw: &str) -> Option<PidStat> {
    // The command name (field 2) may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &raw[raw.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(PidStat {
        state: KernelState::from_letter(f.first()?.chars().next()?),
        ppid: f.get(1)?.parse().ok()?,
        pgid: f.get(2)?.parse().ok()?,
        utime: f.get(11)?.parse().ok()?,
        stime: f.get(12)?.parse().ok()?,
        rss: f.get(21)?.parse().ok()?,
    })
}

/// Every process of the host at one moment.
pub struct Scan {
    pub pids: HashMap<u32, PidStat>,
    children: HashMap<u32, Vec<u32>>,
    groups: HashMap<u32, Vec<u32>>,
}

/// What a tree uses, summed over its processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// The leader's state (or, without it, the most active of the tree's).
    pub state: Option<KernelState>,
    /// Milliseconds.
    pub user_cpu_ms: u64,
    pub system_cpu_ms: u64,
    pub rss_bytes: u64,
    /// The most it has used (`VmHWM` for one process; a cgroup's `memory.peak`, or the highest
    /// sum seen, for a tree).
    pub peak_rss_bytes: u64,
    pub processes: u32,
}

fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf with a valid name.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf with a valid name.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

/// `VmHWM` of `/proc/<pid>/status`, in bytes.
fn peak_of(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

impl Scan {
    /// Read every `/proc/<pid>/stat`.
    pub fn take() -> Scan {
        let mut pids = HashMap::new();
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut groups: HashMap<u32, Vec<u32>> = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                let Some(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .as_deref()
                    .and_then(parse_stat)
                else {
                    continue;
                };
                children.entry(stat.ppid).or_default().push(pid);
                groups.entry(stat.pgid).or_default().push(pid);
                pids.insert(pid, stat);
            }
        }
        Scan {
            pids,
            children,
            groups,
        }
    }

    /// The processes `pids` only (their stat lines; no parents' or groups' index beyond them).
    pub fn of(pids: impl IntoIterator<Item = u32>) -> Scan {
        let mut scan = Scan {
            pids: HashMap::new(),
            children: HashMap::new(),
            groups: HashMap::new(),
        };
        for pid in pids {
            if scan.pids.contains_key(&pid) {
                continue;
            }
            if let Some(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .as_deref()
                .and_then(parse_stat)
            {
                scan.children.entry(stat.ppid).or_default().push(pid);
                scan.groups.entry(stat.pgid).or_default().push(pid);
                scan.pids.insert(pid, stat);
            }
        }
        scan
    }

    /// The daemon's adopted orphans (children of the daemon that are none of `leaders`), by the
    /// marker they carry. Read once per scan, for the trees that need it.
    pub fn adopted(&self, leaders: &HashSet<u32>) -> HashMap<String, Vec<u32>> {
        let me = std::process::id();
        let mut by_marker: HashMap<String, Vec<u32>> = HashMap::new();
        for pid in self.children.get(&me).into_iter().flatten() {
            if leaders.contains(pid) {
                continue;
            }
            if let Some(m) = super::records::marker_of(*pid) {
                by_marker.entry(m).or_default().push(*pid);
            }
        }
        by_marker
    }

    /// The pids of `tree`, its leader `leader` first when alive.
    pub fn members(
        &self,
        leader: u32,
        tree: &Tree,
        adopted: &HashMap<String, Vec<u32>>,
    ) -> Vec<u32> {
        let mut seen: HashSet<u32> = HashSet::new();
        let mut out = Vec::new();
        // Its cgroup, its group, the orphans with its marker, and what descends from them all
        // (a child that left both with `setsid` and lost its marker is still a descendant).
        let mut stack: Vec<u32> = tree
            .cgroup
            .as_deref()
            .map(super::cgroup::members)
            .unwrap_or_default();
        stack.extend(self.groups.get(&tree.pgid).into_iter().flatten().copied());
        stack.extend(adopted.get(&tree.marker).into_iter().flatten().copied());
        // Last in, so first out: the leader leads the list.
        stack.push(leader);
        while let Some(pid) = stack.pop() {
            if !self.pids.contains_key(&pid) || !seen.insert(pid) {
                continue;
            }
            out.push(pid);
            stack.extend(
                self.children
                    .get(&pid)
                    .into_iter()
                    .flatten()
                    .filter(|c| !seen.contains(c))
                    .copied(),
            );
        }
        out
    }

    /// What `pids` use together; `leader`'s own figures beside.
    pub fn usage(
        &self,
        leader: u32,
        pids: &[u32],
        cgroup: Option<&Path>,
    ) -> (Usage, Option<Usage>) {
        let tick_ms = 1000 / ticks_per_sec().max(1);
        let page = page_size();
        let one = |pid: u32| -> Option<Usage> {
            let s = self.pids.get(&pid)?;
            Some(Usage {
                state: Some(s.state),
                user_cpu_ms: s.utime * tick_ms,
                system_cpu_ms: s.stime * tick_ms,
                rss_bytes: s.rss * page,
                peak_rss_bytes: peak_of(pid).unwrap_or(s.rss * page),
                processes: 1,
            })
        };
        let own = one(leader);
        let mut tree = Usage::default();
        let mut most_active = None;
        for pid in pids {
            let Some(s) = self.pids.get(pid) else {
                continue;
            };
            tree.user_cpu_ms += s.utime * tick_ms;
            tree.system_cpu_ms += s.stime * tick_ms;
            tree.rss_bytes += s.rss * page;
            tree.processes += 1;
            if most_active.is_none() || s.state == KernelState::Running {
                most_active = Some(s.state);
            }
        }
        tree.state = own.and_then(|o| o.state).or(most_active);
        let cgroup_peak = cgroup.and_then(|cg| {
            std::fs::read_to_string(cg.join("memory.peak"))
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        });
        tree.peak_rss_bytes = cgroup_peak
            .unwrap_or(0)
            .max(tree.rss_bytes)
            .max(own.map_or(0, |o| o.peak_rss_bytes));
        (tree, own)
    }
}

/// What a running process's tree uses, and where it listens.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub tree: Usage,
    /// The leader's own figures, while it lives.
    pub leader: Option<Usage>,
    /// Of one CPU, since the previous measure of this process (at least `RECENT` ago), else
    /// since it started.
    pub cpu_percent: f64,
    pub ports: Vec<Listening>,
    /// The figures are the whole environment's (a container's, as its engine gives them),
    /// not the process's own tree, which the daemon cannot read.
    pub whole_environment: bool,
}

/// The shortest window recent CPU % is measured over.
const RECENT: Duration = Duration::from_millis(250);

/// Measure `procs` (one `/proc` pass for all): `None` for one that has exited or whose
/// processes are not the host's. With `ports`, their listening sockets too.
pub fn measure(procs: &[Arc<Process>], ports: bool) -> Vec<Option<Measured>> {
    let live: Vec<_> = procs
        .iter()
        .map(|p| p.running().then(|| p.group.tree()).flatten())
        .collect();
    if live.iter().all(Option::is_none) {
        return vec![None; procs.len()];
    }
    // Every tree in a cgroup of its own (where the host has them) is its cgroup: what it
    // starts is born there, setsid'd and double-forked alike. Then only their members are read,
    // not the whole host; else one pass over every process finds groups, descendants and
    // marked orphans.
    let in_cgroups = live.iter().flatten().all(|t| t.cgroup.is_some());
    // Each tree's pids, its leader first, when they are its cgroup's.
    let cgroup_members: Vec<Option<Vec<u32>>> = procs
        .iter()
        .zip(&live)
        .map(|(p, t)| {
            let dir = t.as_ref()?.cgroup.as_deref().filter(|_| in_cgroups)?;
            let mut pids = vec![p.pid];
            pids.extend(
                super::cgroup::members(dir)
                    .into_iter()
                    .filter(|&q| q != p.pid),
            );
            Some(pids)
        })
        .collect();
    let scan = if in_cgroups {
        Scan::of(cgroup_members.iter().flatten().flatten().copied())
    } else {
        Scan::take()
    };
    let leaders: HashSet<u32> = procs.iter().map(|p| p.pid).collect();
    let adopted = if in_cgroups {
        HashMap::new()
    } else {
        scan.adopted(&leaders)
    };
    let trees: Vec<Option<(Vec<u32>, Tree)>> = procs
        .iter()
        .zip(live)
        .zip(cgroup_members)
        .map(|((p, tree), members)| {
            let tree = tree?;
            let pids = match members {
                // Those alive now (a leader gone, a member exited since the cgroup was read).
                Some(m) => m
                    .into_iter()
                    .filter(|q| scan.pids.contains_key(q))
                    .collect(),
                None => scan.members(p.pid, &tree, &adopted),
            };
            Some((pids, tree))
        })
        .collect();
    // The sockets each tree holds, from its descriptors; the host's socket tables only when
    // some tree holds one: reading /proc/net/tcp walks the kernel's whole hash table, which
    // costs milliseconds even when it is empty.
    let held: Vec<Vec<(u32, u64)>> = trees
        .iter()
        .map(|t| match t {
            Some((pids, _)) if ports => socket_inodes(pids),
            _ => Vec::new(),
        })
        .collect();
    let sockets = if held.iter().any(|h| !h.is_empty()) {
        sockets()
    } else {
        HashMap::new()
    };
    procs
        .iter()
        .zip(trees)
        .zip(held)
        .map(|((p, tree), held)| {
            let (pids, tree) = tree?;
            let (usage, leader) = scan.usage(p.pid, &pids, tree.cgroup.as_deref());
            Some(Measured {
                cpu_percent: recent_cpu(p, usage.user_cpu_ms + usage.system_cpu_ms),
                tree: usage,
                leader,
                ports: listening_of(&held, &sockets),
                whole_environment: false,
            })
        })
        .collect()
}

/// CPU % of one CPU since the previous measure of `p` (at least `RECENT` ago), else since it
/// started, given its CPU milliseconds now.
pub fn recent_cpu(p: &Process, cpu: u64) -> f64 {
    recent_cpu_counted_from(p, cpu, p.started)
}

/// The same, for a `cpu` counted from `counted_from` rather than from the process's start (a
/// container's, counted from the container's start).
pub fn recent_cpu_counted_from(p: &Process, cpu: u64, counted_from: Instant) -> f64 {
    let now = Instant::now();
    let mut last = p.cpu_sample.lock().unwrap_or_else(|e| e.into_inner());
    let (from_cpu, from) = match *last {
        Some((c, t)) if now.duration_since(t) >= RECENT && c <= cpu => (c, t),
        _ => (0, counted_from),
    };
    let wall = now.duration_since(from).as_millis().max(1) as f64;
    let cpu_percent = cpu.saturating_sub(from_cpu) as f64 * 100.0 / wall;
    if last.is_none_or(|(_, t)| now.duration_since(t) >= RECENT) {
        *last = Some((cpu, now));
    }
    (cpu_percent * 10.0).round() / 10.0
}

/// What an environment's engine says all of it uses, and since when it counts (its start).
#[derive(Debug, Clone, Copy)]
pub struct EnvironmentUsage {
    pub usage: Usage,
    pub since: Option<std::time::SystemTime>,
}

/// A socket a tree listens on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listening {
    /// `tcp` or `udp`.
    pub protocol: &'static str,
    pub address: String,
    pub port: u16,
    pub pid: u32,
}

/// The host's listening sockets by inode: TCP in LISTEN, UDP bound (unconnected).
pub fn sockets() -> HashMap<u64, (&'static str, String, u16)> {
    super::sock_diag::sockets().unwrap_or_else(|e| {
        tracing::debug!(error = %e, "sock_diag refused; reading /proc/net");
        sockets_from_proc()
    })
}

/// The same from `/proc/net/{tcp,tcp6,udp,udp6}`, where sock_diag is not there.
pub fn sockets_from_proc() -> HashMap<u64, (&'static str, String, u16)> {
    let mut out = HashMap::new();
    for (file, protocol, v6) in [
        ("/proc/net/tcp", "tcp", false),
        ("/proc/net/tcp6", "tcp", true),
        ("/proc/net/udp", "udp", false),
        ("/proc/net/udp6", "udp", true),
    ] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            // TCP_LISTEN is 0A; a bound UDP socket without a peer is 07 (TCP_CLOSE).
            let listening = if protocol == "tcp" {
                *state == "0A"
            } else {
                *state == "07"
            };
            let Ok(inode) = inode.parse::<u64>() else {
                continue;
            };
            if !listening || inode == 0 {
                continue;
            }
            if let Some((address, port)) = parse_address(local, v6) {
                out.insert(inode, (protocol, address, port));
            }
        }
    }
    out
}

/// `0100007F:1F90` (or the 32-hex-digit IPv6 form) as an address and a port.
fn parse_address(s: &str, v6: bool) -> Option<(String, u16)> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let address = if v6 {
        if addr.len() != 32 {
            return None;
        }
        // Four 32-bit words, each in the host's byte order.
        let mut bytes = [0u8; 16];
        for w in 0..4 {
            let word = u32::from_str_radix(&addr[w * 8..w * 8 + 8], 16).ok()?;
            bytes[w * 4..w * 4 + 4].copy_from_slice(&word.to_ne_bytes());
        }
        std::net::Ipv6Addr::from(bytes).to_string()
    } else {
        let word = u32::from_str_radix(addr, 16).ok()?;
        std::net::Ipv4Addr::from(word.to_ne_bytes()).to_string()
    };
    Some((address, port))
}

/// The sockets of `sockets` that `pids` hold open.
pub fn listening(
    pids: &[u32],
    sockets: &HashMap<u64, (&'static str, String, u16)>,
) -> Vec<Listening> {
    listening_of(&socket_inodes(pids), sockets)
}

/// The socket inodes `pids` hold open, by pid.
fn socket_inodes(pids: &[u32]) -> Vec<(u32, u64)> {
    let mut out = Vec::new();
    for pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            {
                out.push((*pid, inode));
            }
        }
    }
    out
}

/// Which of the `held` sockets are in `sockets` (listening or bound).
fn listening_of(
    held: &[(u32, u64)],
    sockets: &HashMap<u64, (&'static str, String, u16)>,
) -> Vec<Listening> {
    let mut out: Vec<Listening> = held
        .iter()
        .filter_map(|(pid, inode)| {
            let (protocol, address, port) = sockets.get(inode)?;
            Some(Listening {
                protocol,
                address: address.clone(),
                port: *port,
                pid: *pid,
            })
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_and_socket_addresses_parse() {
        let s = parse_stat("42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 1000 250 18446744073709551615").unwrap();
        assert_eq!((s.ppid, s.pgid, s.state), (1, 42, KernelState::Sleeping));
        assert_eq!((s.utime, s.stime, s.rss), (7, 3, 250));
        assert_eq!(
            parse_address("0100007F:1F90", false),
            Some(("127.0.0.1".into(), 8080))
        );
        assert_eq!(
            parse_address("00000000:0035", false),
            Some(("0.0.0.0".into(), 53))
        );
        assert_eq!(
            parse_address("00000000000000000000000001000000:1F90", true),
            Some(("::1".into(), 8080))
        );
    }

    #[test]
    fn this_process_is_found_with_its_listening_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = std::process::id();
        let found = listening(&[me], &sockets());
        assert!(
            found
                .iter()
                .any(|s| s.port == port && s.protocol == "tcp" && s.address == "127.0.0.1"),
            "{found:?}"
        );
        let scan = Scan::take();
        let (_, own) = scan.usage(me, &[me], None);
        let own = own.unwrap();
        assert!(
            own.rss_bytes > 0 && own.peak_rss_bytes >= own.rss_bytes,
            "{own:?}"
        );
    }
}
