//! The host's CPUs, memory, OS and architecture, from the standard library, `/proc/meminfo`
//! and `/etc/os-release`.

/// The host facts of `Capabilities`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Host {
    pub cpus: u32,
    pub memory_bytes: u64,
    pub os: String,
    pub arch: String,
}

impl Default for Host {
    /// What is known without reading a file.
    fn default() -> Self {
        Host {
            cpus: cpus(),
            memory_bytes: 0,
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
        }
    }
}

/// Read the host facts; reads files, so it runs off the async workers.
pub(super) fn read() -> Host {
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| mem_total(&m))
        .unwrap_or(0);
    // os-release(5): /etc/os-release, else /usr/lib/os-release.
    let distro = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| pretty_name(&text));
    let host = Host::default();
    Host {
        memory_bytes,
        os: match distro {
            Some(d) => format!("{} ({d})", host.os),
            None => host.os.clone(),
        },
        ..host
    }
}

/// CPUs this process may run on: `available_parallelism` counts the affinity mask and a cgroup
/// CPU quota, which is what a process started here gets.
fn cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

/// `MemTotal` of `/proc/meminfo` in bytes (the file counts in kB, meaning KiB).
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?;
    let mut words = line.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => n.checked_mul(1024),
        Some(_) => None,
    }
}

/// `PRETTY_NAME` of an os-release file, its shell quotes removed.
fn pretty_name(os_release: &str) -> Option<String> {
    let value = os_release
        .lines()
        .find_map(|l| l.trim().strip_prefix("PRETTY_NAME="))?
        .trim();
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q))
        .unwrap_or(value);
    let unescaped = unquoted.replace("\\\"", "\"").replace("\\\\", "\\");
    (!unescaped.is_empty()).then_some(unescaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_mem_total_in_bytes() {
        let meminfo = "MemTotal:       24684092 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(meminfo), Some(24_684_092 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total("MemTotal: lots kB\n"), None);
        assert_eq!(mem_total("MemTotal: 5 MB\n"), None);
        assert_eq!(mem_total("MemTotal: 18446744073709551615 kB\n"), None);
    }

    #[test]
    fn the_distro_is_pretty_name_unquoted() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n";
        assert_eq!(
            pretty_name(debian).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            pretty_name("NAME=Alpine\nPRETTY_NAME='Alpine Linux v3.19'\n").as_deref(),
            Some("Alpine Linux v3.19")
        );
        assert_eq!(pretty_name("PRETTY_NAME=Arch\n").as_deref(), Some("Arch"));
        assert_eq!(
            pretty_name("PRETTY_NAME=\"My \\\"OS\\\"\"\n").as_deref(),
            Some("My \"OS\"")
        );
        assert_eq!(pretty_name("NAME=x\n"), None);
        assert_eq!(pretty_name("PRETTY_NAME=\"\"\n"), None);
    }

    #[test]
    fn this_host_reads() {
        let host = read();
        assert!(host.cpus >= 1);
        assert!(host.os.starts_with(std::env::consts::OS), "{}", host.os);
    }
}
