//! Spawning a pipe process straight into its cgroup, with clone3(2)'s `CLONE_INTO_CGROUP`
//! (Linux 5.7).
//!
//! Moving a running process into a cgroup (a write to `cgroup.procs`) takes the kernel's
//! cgroup-wide thread-group lock for writing, which waits for an RCU grace period: 1 to 17 ms
//! measured here, on the spawning thread, while the child runs outside its cgroup and may fork
//! there. A child cloned into the cgroup is born in it, and nothing waits. glibc's posix_spawn
//! gained a cgroup attribute only in 2.41, so this is a fork-like clone3 (no `CLONE_VM`: the
//! child gets its own copy of the address space, as fork gives, and returns from the call on its
//! own stack) with `CLONE_VFORK`, so that the caller waits, as with posix_spawn, until the child
//! has exec'd or failed to. The child runs only async-signal-safe system calls on data prepared
//! before the clone: it must not allocate (another thread may have held the allocator's lock at
//! the clone).
use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

/// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The daemon's ends of the child's stdio.
pub struct Child {
    pub pid: u32,
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"))
}

/// A pipe, both ends close-on-exec: (read, write).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills both descriptors on success, which we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just opened, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Spawn `program` with `argv` and exactly `env`, in `cwd`, in a process group of its own and in
/// the cgroup whose directory `cgroup` is open on; stdin a pipe (`stdin`) or /dev/null, stdout
/// and stderr pipes. `Ok(None)` when this kernel (or this cgroup) cannot clone into a cgroup: the
/// caller spawns another way and moves the child. Exec's own failure is the error, as from
/// posix_spawn.
pub fn spawn(
    program: &Path,
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
    stdin: bool,
    cgroup: &OwnedFd,
) -> io::Result<Option<Child>> {
    let program = cstring(program.as_os_str().as_bytes())?;
    let argv: Vec<CString> = argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let env: Vec<CString> = env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
        .collect::<io::Result<_>>()?;
    let cwd = cwd.map(|c| cstring(c.as_os_str().as_bytes())).transpose()?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    argv_p.push(ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env.iter().map(|s| s.as_ptr()).collect();
    env_p.push(ptr::null());

    let (stdin_r, stdin_w) = if stdin {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        (std::fs::File::open("/dev/null")?.into(), None)
    };
    let (stdout_r, stdout_w) = pipe()?;
    let (stderr_r, stderr_w) = pipe()?;
    // The child's errno if exec fails; closed by a successful exec.
    let (err_r, err_w) = pipe()?;
    let child_fds = [
        stdin_r.as_raw_fd(),
        stdout_w.as_raw_fd(),
        stderr_w.as_raw_fd(),
    ];
    let err_fd = err_w.as_raw_fd();
    // SAFETY: a sigset_t is plain data, initialised by sigemptyset.
    let empty = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    };

    let mut args = CloneArgs {
        flags: libc::CLONE_VFORK as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM is fork with arguments: the child has its own copy of
    // everything and returns here with 0. It only makes system calls on what was prepared above,
    // then execs or exits; the parent is suspended (CLONE_VFORK) until it does.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: the child, single-threaded: async-signal-safe calls only, then exec or _exit.
        unsafe {
            child(
                &child_fds,
                cwd.as_ref(),
                &empty,
                &program,
                &argv_p,
                &env_p,
                err_fd,
            )
        }
    }
    if pid < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            // Not this way (an older kernel, seccomp, a cgroup that refuses the clone): the
            // caller's way, without the cgroup at birth.
            Some(
                libc::ENOSYS
                | libc::EINVAL
                | libc::E2BIG
                | libc::EPERM
                | libc::EACCES
                | libc::EBUSY
                | libc::EOPNOTSUPP,
            ) => Ok(None),
            _ => Err(e),
        };
    }
    drop(err_w);
    let mut errno = [0u8; 4];
    let mut got = 0;
    while got < errno.len() {
        // SAFETY: reads into our buffer from a descriptor we own.
        let n = unsafe {
            libc::read(
                err_r.as_raw_fd(),
                errno[got..].as_mut_ptr().cast(),
                errno.len() - got,
            )
        };
        match n {
            0 => break,
            n if n > 0 => got += n as usize,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => return Err(io::Error::last_os_error()),
        }
    }
    if got == errno.len() {
        // It exited 127; the reaper collects it (no waiter is registered for it).
        return Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
    }
    Ok(Some(Child {
        pid: pid as u32,
        stdin: stdin_w,
        stdout: stdout_r,
        stderr: stderr_r,
    }))
}

/// In the child: its own process group, its stdio, its directory, default signals, exec; on any
/// failure the errno goes down `err_fd` and it exits 127.
///
/// # Safety
/// Only in the child of the clone above.
unsafe fn child(
    fds: &[RawFd; 3],
    cwd: Option<&CString>,
    empty: &libc::sigset_t,
    program: &CString,
    argv: &[*const libc::c_char],
    env: &[*const libc::c_char],
    err_fd: RawFd,
) -> ! {
    let fail = || -> ! {
        // SAFETY: errno of this thread; a write and _exit, both async-signal-safe.
        unsafe {
            let bytes = (*libc::__errno_location()).to_ne_bytes();
            libc::write(err_fd, bytes.as_ptr().cast(), bytes.len());
            libc::_exit(127)
        }
    };
    // SAFETY: system calls on the child's own copy of what the parent prepared.
    unsafe {
        // Its own group, so signals and the final kill reach everything it starts.
        if libc::setpgid(0, 0) != 0 {
            fail();
        }
        for (target, &fd) in fds.iter().enumerate() {
            let target = target as RawFd;
            if fd == target {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    fail();
                }
            } else if libc::dup2(fd, target) < 0 {
                fail();
            }
        }
        if let Some(cwd) = cwd {
            if libc::chdir(cwd.as_ptr()) != 0 {
                fail();
            }
        }
        // What posix_spawn is asked for too: no blocked signals, and SIGPIPE (which Rust's
        // runtime ignores, and an ignored signal stays ignored across exec) at its default.
        libc::sigprocmask(libc::SIG_SETMASK, empty, ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::execve(program.as_ptr(), argv.as_ptr(), env.as_ptr());
    }
    fail()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_child_is_born_in_its_cgroup_and_a_failed_exec_is_the_error() {
        let name = format!("tend-unit-clone-{}", std::process::id());
        let cgroups = match super::super::cgroup::Cgroups::create(&name) {
            Ok(c) => c,
            Err(why) => {
                eprintln!("no writable cgroup v2 hierarchy here ({why}); skipping");
                return;
            }
        };
        let (dir, fd) = cgroups.make("p-1").unwrap();
        let argv = [
            "sh".to_string(),
            "-c".into(),
            "cat /proc/self/cgroup".into(),
        ];
        let env = BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]);
        let Some(child) = spawn(Path::new("/bin/sh"), &argv, &env, None, false, &fd).unwrap()
        else {
            eprintln!("this kernel cannot clone into a cgroup; skipping");
            super::super::cgroup::remove(cgroups.root());
            return;
        };
        drop(child.stderr);
        let mut out = String::new();
        std::fs::File::from(child.stdout)
            .read_to_string(&mut out)
            .unwrap();
        // SAFETY: waits for the child just spawned (a test's reaper may have taken it: ECHILD).
        unsafe { libc::waitpid(child.pid as i32, ptr::null_mut(), 0) };
        assert!(out.contains(&format!("{name}/p-1")), "{out}");

        let missing = spawn(Path::new("/no/such/program"), &argv, &env, None, false, &fd);
        let e = missing.err().expect("exec of a missing program fails");
        // (Its child exited 127, left for whoever reaps this test process's children.)
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        drop(fd);
        super::super::cgroup::remove(&dir);
        super::super::cgroup::remove(cgroups.root());
    }
}
