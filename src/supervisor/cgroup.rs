//! Containment by cgroup v2, where a writable hierarchy exists: the daemon makes a cgroup of its
//! own beside itself (`tend.<pid>.<start>`), and every process gets a child cgroup in it. A
//! cgroup holds everything a process starts, whatever it does with its session or group
//! (`setsid`, double forks), and `cgroup.kill` (Linux 5.14) kills all of it at once, also what
//! a crashed daemon left: the daemon's cgroup path is in its record.
//!
//! A process is cloned straight into its cgroup (`clone_spawn`, on x86_64), or where that is
//! refused joins it itself before exec; one that cannot runs outside, and still carries the
//! `TEND_ORIGIN` marker, which stops and the sweep also use.
//!
//! Where the hierarchy offers them, the `memory` and `pids` controllers are enabled for the
//! processes' cgroups, for the limits a spec may ask (`hints`). On a hybrid host, where cgroup
//! v2 has no such controller and it is a cgroup v1 hierarchy of its own, the daemon makes a
//! root of its own there too (same name, beside its own v1 cgroup), and a process with limits
//! gets a group under it as well, which it joins before exec; it stays in its v2 cgroup, which
//! still contains and kills it.
use std::io;
use std::path::{Path, PathBuf};

/// The daemon's cgroup, under which each process gets one.
#[derive(Debug, Clone)]
pub struct Cgroups {
    root: PathBuf,
    /// Each controller of `CONTROLLERS`: where the processes' cgroups have it, or why nowhere.
    controllers: Vec<(&'static str, Result<Where, String>)>,
}

/// Where a controller's limits of a process are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    /// In the process's own cgroup v2.
    V2,
    /// In `<root>/<process id>` of a cgroup v1 hierarchy: `root` is the daemon's there.
    V1(PathBuf),
}

/// The controllers whose limits a spec may set.
const CONTROLLERS: [&str; 2] = ["memory", "pids"];

impl Cgroups {
    /// Make the daemon's cgroup, named after it, beside the cgroup the daemon runs in. `Err`
    /// says why there is none (no cgroup2 mount, not writable, no `cgroup.kill`).
    pub fn create(name: &str) -> Result<Cgroups, String> {
        let mount = cgroup2_mount().ok_or("no cgroup2 hierarchy is mounted")?;
        let own = own_cgroup().ok_or("this process has no cgroup v2 path in /proc/self/cgroup")?;
        let parent = mount.join(own.trim_start_matches('/'));
        let root = parent.join(name);
        match std::fs::create_dir(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", root.display())),
        }
        if !root.join("cgroup.kill").exists() {
            let _ = std::fs::remove_dir(&root);
            return Err(format!(
                "{} has no cgroup.kill (Linux 5.14 or later needed)",
                root.display()
            ));
        }
        let controllers = CONTROLLERS
            .iter()
            .map(|&c| {
                let found = enable(&mount, &parent, &root, c).map(|()| Where::V2);
                // Only where v2 cannot: a hybrid host's v1 hierarchy of the controller.
                let found = found.or_else(|v2| {
                    v1_root(c, name).map(Where::V1).map_err(|v1| {
                        format!("{v2}; nor can a cgroup v1 {c} hierarchy serve: {v1}")
                    })
                });
                (c, found)
            })
            .collect();
        Ok(Cgroups { root, controllers })
    }

    /// Where the processes' cgroups have `controller`; `Err` says why nowhere.
    pub fn controller(&self, controller: &str) -> Result<Where, String> {
        self.controllers
            .iter()
            .find(|(c, _)| *c == controller)
            .map_or_else(
                || Err(format!("tend does not manage the {controller} controller")),
                |(_, r)| r.clone(),
            )
    }

    /// The daemon's roots in cgroup v1 hierarchies (none where v2 has both controllers).
    pub fn v1_roots(&self) -> impl Iterator<Item = &Path> {
        self.controllers.iter().filter_map(|(_, w)| match w {
            Ok(Where::V1(root)) => Some(root.as_path()),
            _ => None,
        })
    }

    /// Remove the daemon's cgroup and its cgroup v1 roots, with the empty cgroups below them;
    /// what still holds processes stays.
    pub fn remove_all(&self) {
        remove(&self.root);
        for root in self.v1_roots() {
            remove(root);
        }
    }

    /// Remove the cgroup v1 roots that daemons no longer running left beside this daemon's,
    /// and the empty groups in them; what still holds processes stays (the records' sweep
    /// kills those through their v2 cgroups; a later start removes what is then empty).
    pub fn sweep_v1(&self) {
        for root in self.v1_roots() {
            let Some(parent) = root.parent() else {
                continue;
            };
            let Ok(entries) = std::fs::read_dir(parent) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                if owner_gone(&name.to_string_lossy()) {
                    remove(&e.path());
                }
            }
        }
    }

    /// The daemon's cgroup.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Make the cgroup of process `id`, open for a child to be cloned into it.
    pub fn make(&self, id: &str) -> io::Result<(PathBuf, std::os::fd::OwnedFd)> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.root.join(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&dir)?;
        Ok((dir, fd.into()))
    }

    /// Make the cgroup of process `id` and move `pid` into it.
    pub fn adopt(&self, id: &str, pid: u32) -> io::Result<PathBuf> {
        let dir = self.root.join(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        match std::fs::write(dir.join("cgroup.procs"), pid.to_string()) {
            // Already gone (a short-lived process): nothing to hold; the empty cgroup is
            // removed with the process's record.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(dir),
            Err(e) => Err(e),
            Ok(()) => Ok(dir),
        }
    }
}

/// Make the daemon's root `name` in the cgroup v1 hierarchy of `controller`, beside the
/// daemon's own cgroup there; `Err` says why it cannot.
fn v1_root(controller: &str, name: &str) -> Result<PathBuf, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let (mount_root, mount) = v1_mount(&mountinfo, controller)
        .ok_or_else(|| format!("no cgroup v1 hierarchy with {controller} is mounted"))?;
    let cgroups = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let own = v1_own(&cgroups, controller)
        .ok_or_else(|| format!("/proc/self/cgroup has no {controller} line"))?;
    // The path is from the hierarchy's root; the mount shows the subtree at `mount_root`.
    let below = if mount_root == "/" {
        own.as_str()
    } else {
        own.strip_prefix(mount_root.as_str())
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .ok_or_else(|| {
                format!(
                    "the daemon's {controller} cgroup {own} is outside the mounted {mount_root}"
                )
            })?
    };
    let root = mount.join(below.trim_start_matches('/')).join(name);
    match std::fs::create_dir(&root) {
        Ok(()) => Ok(root),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(root),
        Err(e) => Err(format!("cannot create {}: {e}", root.display())),
    }
}

/// The root (within the hierarchy) and mount point of the cgroup v1 hierarchy that has
/// `controller`, from mountinfo's text.
fn v1_mount(mountinfo: &str, controller: &str) -> Option<(String, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        // Fields: id parent major:minor root mount-point options [optional...] - fstype
        // source super-options; a v1 hierarchy's controllers are among its super options.
        let (head, tail) = line.split_once(" - ")?;
        let mut tail = tail.split_whitespace();
        if tail.next()? != "cgroup" {
            return None;
        }
        let options = tail.nth(1)?;
        if !options.split(',').any(|o| o == controller) {
            return None;
        }
        let mut head = head.split_whitespace().skip(3);
        let root = unescape_mount(head.next()?);
        let mount = unescape_mount(head.next()?);
        Some((root, PathBuf::from(mount)))
    })
}

/// This process's path in the cgroup v1 hierarchy of `controller`, from /proc/self/cgroup's
/// text (`4:memory:/path`, or `2:cpu,cpuacct:/path` for co-mounted controllers).
fn v1_own(cgroups: &str, controller: &str) -> Option<String> {
    cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, list, path) = (parts.next()?, parts.next()?, parts.next()?);
        list.split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

/// Whether `name` is a daemon's root (`tend.<pid>.<start>`) whose daemon no longer runs.
fn owner_gone(name: &str) -> bool {
    let Some((pid, ticks)) = name
        .strip_prefix("tend.")
        .and_then(|rest| rest.split_once('.'))
    else {
        return false;
    };
    let (Ok(pid), Ok(ticks)) = (pid.parse::<u32>(), ticks.parse::<u64>()) else {
        return false;
    };
    super::records::proc_stat(pid).is_none_or(|s| s.start_ticks != ticks)
}

/// Enable `controller` for the children of `root` (made in `parent`): in `parent`'s
/// `cgroup.subtree_control`, then in `root`'s. `Err` says why it cannot be, and what to do.
fn enable(mount: &Path, parent: &Path, root: &Path, controller: &str) -> Result<(), String> {
    let lists = |file: &Path| {
        std::fs::read_to_string(file).is_ok_and(|s| s.split_whitespace().any(|c| c == controller))
    };
    let offered = parent.join("cgroup.controllers");
    if !lists(&offered) {
        let v1 = Path::new("/sys/fs/cgroup").join(controller);
        let hybrid = if mount != Path::new("/sys/fs/cgroup") && v1.is_dir() {
            format!(
                " (a hybrid host: the controller is in the cgroup v1 hierarchy at {}; boot with \
                 systemd.unified_cgroup_hierarchy=1 for cgroup v2 alone)",
                v1.display()
            )
        } else {
            " (enable it in the parent cgroups' cgroup.subtree_control, or delegate it to \
             tend: Delegate=yes in its systemd unit)"
                .to_string()
        };
        return Err(format!("{} does not offer it{hybrid}", offered.display()));
    }
    for dir in [parent, root] {
        let control = dir.join("cgroup.subtree_control");
        if lists(&control) {
            continue;
        }
        let mut written = std::fs::write(&control, format!("+{controller}"));
        if dir == parent
            && written.as_ref().err().and_then(io::Error::raw_os_error) == Some(libc::EBUSY)
        {
            // cgroup v2 hands a controller to the children of a cgroup (other than the root)
            // only while it holds no processes itself, and the daemon runs in this one: where
            // it is alone there, it moves to a leaf of its own, as container runtimes do.
            written = leave(parent, root)
                .and_then(|()| std::fs::write(&control, format!("+{controller}")));
        }
        if let Err(e) = written {
            let why = if e.raw_os_error() == Some(libc::EBUSY) {
                " (cgroup v2 hands a controller to the children of a cgroup only while it holds \
                 no processes, and other processes share the daemon's: start tend in a cgroup \
                 of its own, e.g. `systemd-run -p Delegate=yes tend serve`)"
            } else {
                ""
            };
            return Err(format!(
                "writing +{controller} to {} failed: {e}{why}",
                control.display()
            ));
        }
    }
    Ok(())
}

/// Move the daemon out of `parent`, where it runs alone, into a leaf beside `root` (not inside
/// it: `cgroup.kill` of `root` would take the daemon too). The leaves of daemons gone are
/// removed; a live daemon's holds it, and rmdir(2) leaves it. `EBUSY` when others share
/// `parent`.
fn leave(parent: &Path, root: &Path) -> io::Result<()> {
    let me = std::process::id();
    let procs = std::fs::read_to_string(parent.join("cgroup.procs"))?;
    if procs.split_whitespace().any(|p| p != me.to_string()) {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    if let Ok(entries) = std::fs::read_dir(parent) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("tend.") && name.ends_with(DAEMON_LEAF) {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
    let mut leaf = root.as_os_str().to_owned();
    leaf.push(DAEMON_LEAF);
    let leaf = PathBuf::from(leaf);
    match std::fs::create_dir(&leaf) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    std::fs::write(leaf.join("cgroup.procs"), me.to_string())?;
    tracing::info!(cgroup = %leaf.display(), "the daemon moved to a leaf cgroup, so that its processes' cgroups can have controllers");
    Ok(())
}

/// The suffix of the leaf a daemon moves to (`leave`), beside its cgroup.
const DAEMON_LEAF: &str = ".daemon";

/// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a
/// hybrid host).
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        // Fields: id parent major:minor root mount-point options [optional...] - fstype ...
        let (head, tail) = line.split_once(" - ")?;
        if tail.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mount = head.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_mount(mount)))
    })
}

/// Mount points in mountinfo have spaces and the like as octal escapes.
fn unescape_mount(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let digits: String = chars.clone().take(3).collect();
            if let Ok(v) = u8::from_str_radix(&digits, 8) {
                out.push(v as char);
                for _ in 0..3 {
                    chars.next();
                }
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// This process's cgroup v2 path (`0::/path`).
fn own_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

/// Kill everything in the cgroup at `dir` and below it.
pub fn kill(dir: &Path) -> io::Result<()> {
    std::fs::write(dir.join("cgroup.kill"), "1")
}

/// Whether anything runs in the cgroup at `dir` or below it; false once it is gone.
pub fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|e| e.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// The processes in the cgroup at `dir` and below it.
pub fn members(dir: &Path) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(members(&e.path()));
            }
        }
    }
    out
}

/// Remove the cgroup at `dir` and the (empty) cgroups below it; what still holds processes
/// stays.
pub fn remove(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount("/sys/fs/cgroup"), "/sys/fs/cgroup");
        assert_eq!(unescape_mount("/a\\040b"), "/a b");
    }

    #[test]
    fn a_v1_hierarchy_and_the_daemons_place_in_it_are_found() {
        let info = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    32 31 0:29 /sub /sys/fs/cgroup/cpu\\040x rw - cgroup cgroup rw,cpu,cpuacct\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v1_mount(info, "memory"),
            Some(("/".into(), PathBuf::from("/sys/fs/cgroup/memory")))
        );
        assert_eq!(
            v1_mount(info, "cpuacct"),
            Some(("/sub".into(), PathBuf::from("/sys/fs/cgroup/cpu x")))
        );
        assert_eq!(v1_mount(info, "pids"), None);
        let own = "8:pids:/\n4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/\n";
        assert_eq!(v1_own(own, "memory").as_deref(), Some("/a/b"));
        assert_eq!(v1_own(own, "cpuacct").as_deref(), Some("/c"));
        assert_eq!(v1_own(own, "blkio"), None);
    }

    #[test]
    fn only_roots_of_daemons_gone_are_swept() {
        let me = crate::supervisor::records::Owner::current().unwrap();
        assert!(!owner_gone(&me.name()));
        assert!(owner_gone(&format!(
            "tend.{}.{}",
            me.pid,
            me.start_ticks + 1
        )));
        assert!(owner_gone(&format!("tend.{}.1", u32::MAX)));
        assert!(!owner_gone("tend-unit-1"));
        assert!(!owner_gone("tend.1"));
        assert!(!owner_gone("other.1.2"));
    }

    #[test]
    fn a_cgroup_holds_a_setsid_child_and_kill_ends_it() {
        let name = format!("tend-unit-{}", std::process::id());
        let cgroups = match Cgroups::create(&name) {
            Ok(c) => c,
            Err(why) => {
                eprintln!("no writable cgroup v2 hierarchy here ({why}); skipping");
                assert_ne!(
                    std::env::var("TEND_REQUIRE_CGROUP").as_deref(),
                    Ok("1"),
                    "TEND_REQUIRE_CGROUP=1 but {why}"
                );
                return;
            }
        };
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x; setsid sleep 1000 & wait"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let dir = cgroups.adopt("p-1", child.id()).unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while members(cgroups.root()).len() < 2 {
            assert!(std::time::Instant::now() < deadline, "setsid never ran");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(populated(&dir));
        kill(cgroups.root()).unwrap();
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while populated(cgroups.root()) {
            assert!(std::time::Instant::now() < deadline, "still populated");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        cgroups.remove_all();
        assert!(!cgroups.root().exists());
        assert!(cgroups.v1_roots().all(|r| !r.exists()));
    }
}
