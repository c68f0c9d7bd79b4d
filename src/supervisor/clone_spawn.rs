//! Spawning a pipe process straight into its cgroup, with clone3(2)'s `CLONE_INTO_CGROUP`
//! (Linux 5.7).
//!
//! Moving a running process into a cgroup (a write to `cgroup.procs`) takes the kernel's
//! cgroup-wide thread-group lock for writing, which waits for an RCU grace period: 1 to 17 ms
//! measured here, on the spawning thread, while the child runs outside its cgroup and may fork
//! there. A child cloned into the cgroup is born in it, and nothing waits. glibc's posix_spawn
//! gained a cgroup attribute only in 2.41, so this does what its posix_spawn does, by hand:
//! clone3 with `CLONE_VM | CLONE_VFORK` (the child borrows the daemon's memory on a stack of its
//! own, and the calling thread waits until it has exec'd or failed to, so the cost does not
//! grow with the daemon's memory: a fork-like clone measured 0.7-1.2 ms more per start here, in
//! page-table copies and copy-on-write faults). The child starts on a new stack, which only a
//! few instructions of assembly can give it, so this is x86_64's; elsewhere `spawn` says so and
//! the caller moves the child the old way. The child runs only async-signal-safe system calls on
//! data prepared before the clone, with every signal blocked until its handlers are reset.
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
/// The child's stack: it calls a handful of libc wrappers, nothing deep.
const CHILD_STACK: usize = 64 << 10;

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

/// What the child needs, prepared by the parent; `errno` is the child's answer when exec fails
/// (the memory is shared, and the parent reads it once the child is gone).
struct Plan {
    fds: [RawFd; 3],
    cwd: *const libc::c_char,
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    env: *const *const libc::c_char,
    errno: i32,
}

/// Spawn `program` with `argv` and exactly `env`, in `cwd`, in a process group of its own and in
/// the cgroup whose directory `cgroup` is open on; stdin a pipe (`stdin`) or /dev/null, stdout
/// and stderr pipes. `Ok(None)` when this kernel (or this cgroup, or this architecture) cannot
/// clone into a cgroup: the caller spawns another way and moves the child. Exec's own failure
/// is the error, as from posix_spawn.
pub fn spawn(
    program: &Path,
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
    stdin: bool,
    cgroup: &OwnedFd,
) -> io::Result<Option<Child>> {
    if !cfg!(target_arch = "x86_64") {
        return Ok(None);
    }
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
    let mut plan = Plan {
        fds: [
            stdin_r.as_raw_fd(),
            stdout_w.as_raw_fd(),
            stderr_w.as_raw_fd(),
        ],
        cwd: cwd.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
        program: program.as_ptr(),
        argv: argv_p.as_ptr(),
        env: env_p.as_ptr(),
        errno: 0,
    };
    // u128s: the stack must be 16-byte aligned.
    let mut stack = vec![0u128; CHILD_STACK / 16];
    let mut args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.as_mut_ptr() as u64,
        stack_size: CHILD_STACK as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: signal masks of this thread, saved and restored around the clone. The clone: the
    // child runs `child` on its own stack in our memory, touching only `plan` (alive until the
    // call returns, which is after the child exec'd or exited), while this thread is suspended.
    let ret = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        // A handler of the daemon's must not run in the child, on the daemon's memory.
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let ret = clone3_vm(&mut args, child, (&mut plan as *mut Plan).cast());
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut());
        ret
    };
    drop(stack);
    if ret < 0 {
        return match -ret as i32 {
            // Not this way (an older kernel, seccomp, a cgroup that refuses the clone): the
            // caller's way, without the cgroup at birth.
            libc::ENOSYS
            | libc::EINVAL
            | libc::E2BIG
            | libc::EPERM
            | libc::EACCES
            | libc::EBUSY
            | libc::EOPNOTSUPP => Ok(None),
            errno => Err(io::Error::from_raw_os_error(errno)),
        };
    }
    if plan.errno != 0 {
        // It exited 127; the reaper collects it (no waiter is registered for it).
        return Err(io::Error::from_raw_os_error(plan.errno));
    }
    Ok(Some(Child {
        pid: ret as u32,
        stdin: stdin_w,
        stdout: stdout_r,
        stderr: stderr_r,
    }))
}

/// clone3 whose child calls `f(arg)` on the stack in `args`; the parent gets the child's PID or
/// a negative errno.
///
/// # Safety
/// `args` must hold a valid stack for `f`, which must never return; with `CLONE_VM`, `f` must
/// only make async-signal-safe calls.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_vm(
    args: &mut CloneArgs,
    f: extern "C" fn(*mut libc::c_void) -> !,
    arg: *mut libc::c_void,
) -> i64 {
    let ret: i64;
    // SAFETY: the caller's. The child returns from `syscall` with rax 0 on the new stack (rsp
    // = stack + stack_size, 16-byte aligned, so `call` leaves it as the ABI expects) and every
    // other register as the parent's: r12 and r13 carry the argument and the function.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") arg,
            in("r13") f,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_vm(
    _: &mut CloneArgs,
    _: extern "C" fn(*mut libc::c_void) -> !,
    _: *mut libc::c_void,
) -> i64 {
    -(libc::ENOSYS as i64)
}

/// In the child: default signal handlers and no blocked signals, its own process group, its
/// stdio, its directory, exec; on any failure the errno goes into the plan and it exits 127.
extern "C" fn child(arg: *mut libc::c_void) -> ! {
    // SAFETY: `arg` is the parent's `Plan`, alive while the parent is suspended; only system
    // call wrappers below, on descriptors and strings it prepared.
    unsafe {
        let plan = &mut *arg.cast::<Plan>();
        let fail = |plan: &mut Plan| -> ! {
            plan.errno = *libc::__errno_location();
            libc::_exit(127)
        };
        // What the daemon handles goes back to its default before the mask opens: a handler
        // would run on the daemon's memory. SIGPIPE, which Rust's runtime ignores (and an
        // ignored signal stays ignored across exec), goes back to its default too.
        for sig in 1..=libc::SIGRTMAX() {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, ptr::null(), &mut old) == 0
                && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
                && old.sa_sigaction != libc::SIG_DFL
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, ptr::null_mut());
        // Its own group, so signals and the final kill reach everything it starts.
        if libc::setpgid(0, 0) != 0 {
            fail(plan);
        }
        for (target, &fd) in plan.fds.iter().enumerate() {
            let target = target as RawFd;
            if fd == target {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    fail(plan);
                }
            } else if libc::dup2(fd, target) < 0 {
                fail(plan);
            }
        }
        if !plan.cwd.is_null() && libc::chdir(plan.cwd) != 0 {
            fail(plan);
        }
        libc::execve(plan.program, plan.argv, plan.env);
        fail(plan)
    }
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
