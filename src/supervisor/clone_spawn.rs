//! Spawning every child: a clone with `CLONE_VM | CLONE_VFORK`, as posix_spawn does it, running
//! a child of our own, which also does what posix_spawn cannot: the process's resource hints
//! (niceness, OOM score) and its cgroup, set before the program runs.
//!
//! Moving a running process into a cgroup (a write to `cgroup.procs`) takes the kernel's
//! cgroup-wide thread-group lock for writing, which waits for an RCU grace period: 1 to 17 ms
//! measured here, on the spawning thread, while the child runs outside its cgroup and may fork
//! there. A child cloned into the cgroup with clone3(2)'s `CLONE_INTO_CGROUP` (Linux 5.7) is born
//! in it, and nothing waits. glibc's posix_spawn gained a cgroup attribute only in 2.41, so this
//! does what its posix_spawn does, by hand: clone3 with `CLONE_VM | CLONE_VFORK` (the child
//! borrows the daemon's memory on a stack of its own, and the calling thread waits until it has
//! exec'd or failed to, so the cost does not grow with the daemon's memory: a fork-like clone
//! measured 0.7-1.2 ms more per start here, in page-table copies and copy-on-write faults). The
//! child starts on a new stack, which only a few instructions of assembly can give clone3, so
//! that is x86_64's. Elsewhere, or where clone3 refuses (an older kernel, seccomp, a cgroup that
//! refuses the clone), glibc's clone(3) starts the same child, which joins its cgroup itself
//! (writing 0 to `cgroup.procs`) before exec: slower, but still before the program runs. The
//! child runs only async-signal-safe system calls on data prepared before the clone, with every
//! signal blocked until its handlers are reset.
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

/// Where the child's stdin, stdout and stderr go.
pub enum Stdio<'a> {
    /// stdout and stderr pipes; stdin a pipe when `stdin`, else /dev/null. The child gets a
    /// process group of its own.
    Pipes { stdin: bool },
    /// This terminal (a PTY's slave) for all three, as the controlling terminal of a new
    /// session the child leads.
    Tty(&'a Path),
}

/// What the child sets up before exec, beside its stdio.
#[derive(Default)]
pub struct Setup<'a> {
    pub cwd: Option<&'a Path>,
    /// Its niceness (setpriority(2)); `None` keeps the daemon's.
    pub nice: Option<i32>,
    /// Its `/proc/self/oom_score_adj`; `None` keeps the daemon's.
    pub oom_score_adj: Option<i32>,
    /// The cgroup (an open directory) to be born in, or to join before exec.
    pub cgroup: Option<&'a OwnedFd>,
    /// Fail rather than run outside `cgroup` (its limits must hold); else a child that cannot
    /// join runs where the daemon is, and `Child::in_cgroup` says so.
    pub cgroup_required: bool,
    /// Groups in cgroup v1 hierarchies (open directories, at most `MAX_V1`) that hold limits
    /// on a hybrid host: the child joins each before exec, wherever its v2 cgroup put it
    /// (CLONE_INTO_CGROUP places it in v2 only), or fails.
    pub v1: Vec<RawFd>,
}

/// The cgroup v1 groups a child may join: one per controller whose limits tend writes.
pub const MAX_V1: usize = 2;

/// The daemon's ends of the child's stdio (none for a terminal: the caller holds its master).
pub struct Child {
    pub pid: u32,
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// In `Setup::cgroup` before the program ran.
    pub in_cgroup: bool,
}

/// Which part of the spawn failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// In the daemon: pipes, strings, the clone itself.
    Prepare,
    /// The child could not join its cgroup (only an error when required).
    Cgroup,
    /// The child could not join `Setup::v1[i]`.
    CgroupV1(usize),
    /// setpriority(2).
    Nice,
    /// The write to `/proc/self/oom_score_adj`.
    OomScoreAdj,
    /// Its session or group, stdio, directory, or exec(2) itself.
    Exec,
}

/// A failed spawn: the step and the system's error.
#[derive(Debug)]
pub struct SpawnError {
    pub step: Step,
    pub source: io::Error,
}

impl From<io::Error> for SpawnError {
    fn from(source: io::Error) -> Self {
        SpawnError {
            step: Step::Prepare,
            source,
        }
    }
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

/// What the child needs, prepared by the parent, and its answers: the memory is shared, and the
/// parent reads them once the child has exec'd or exited.
struct Plan {
    /// The pipes to become 0, 1 and 2 (unused with `tty`).
    fds: [RawFd; 3],
    /// Not null: the terminal to open in a new session.
    tty: *const libc::c_char,
    cwd: *const libc::c_char,
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    env: *const *const libc::c_char,
    /// The cgroup directory to join (not born in it), or -1.
    join: RawFd,
    join_required: bool,
    /// The cgroup v1 groups to join: the first `v1_len`.
    v1: [RawFd; MAX_V1],
    v1_len: usize,
    nice: Option<libc::c_int>,
    /// `oom_score_adj` as the decimal text to write; empty leaves it.
    oom: [u8; 12],
    oom_len: usize,
    /// Answers: whether it joined `join`; the step that failed and its errno.
    joined: bool,
    step: Step,
    errno: i32,
}

/// Spawn `program` with `argv` and exactly `env`, its stdio as `stdio` says, set up as `setup`
/// says. Exec's own failure is the error (its step `Exec`), as from posix_spawn; the child
/// then exited 127, for the reaper.
pub fn spawn(
    program: &Path,
    argv: &[String],
    env: &BTreeMap<String, String>,
    stdio: Stdio<'_>,
    setup: &Setup<'_>,
) -> Result<Child, SpawnError> {
    let program = cstring(program.as_os_str().as_bytes())?;
    let argv: Vec<CString> = argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let env: Vec<CString> = env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
        .collect::<io::Result<_>>()?;
    let cwd = setup
        .cwd
        .map(|c| cstring(c.as_os_str().as_bytes()))
        .transpose()?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    argv_p.push(ptr::null());
    let mut env_p: Vec<*const libc::c_char> = env.iter().map(|s| s.as_ptr()).collect();
    env_p.push(ptr::null());

    let (mut fds, mut tty, mut ours) = ([-1; 3], None, [None, None, None]);
    // The child's ends, closed here once it has exec'd.
    let mut theirs: Vec<OwnedFd> = Vec::new();
    match stdio {
        Stdio::Pipes { stdin } => {
            let stdin_r: OwnedFd = if stdin {
                let (r, w) = pipe()?;
                ours[0] = Some(w);
                r
            } else {
                std::fs::File::open("/dev/null")?.into()
            };
            let (stdout_r, stdout_w) = pipe()?;
            let (stderr_r, stderr_w) = pipe()?;
            ours[1] = Some(stdout_r);
            ours[2] = Some(stderr_r);
            fds = [
                stdin_r.as_raw_fd(),
                stdout_w.as_raw_fd(),
                stderr_w.as_raw_fd(),
            ];
            theirs.extend([stdin_r, stdout_w, stderr_w]);
        }
        Stdio::Tty(path) => tty = Some(cstring(path.as_os_str().as_bytes())?),
    }
    if setup.v1.len() > MAX_V1 {
        return Err(
            io::Error::new(io::ErrorKind::InvalidInput, "too many cgroup v1 groups").into(),
        );
    }
    let mut v1 = [-1; MAX_V1];
    v1[..setup.v1.len()].copy_from_slice(&setup.v1);
    let mut oom = [0u8; 12];
    let mut oom_len = 0;
    if let Some(v) = setup.oom_score_adj {
        let text = v.to_string();
        oom[..text.len()].copy_from_slice(text.as_bytes());
        oom_len = text.len();
    }
    let mut plan = Plan {
        fds,
        tty: tty.as_ref().map_or(ptr::null(), |t| t.as_ptr()),
        cwd: cwd.as_ref().map_or(ptr::null(), |c| c.as_ptr()),
        program: program.as_ptr(),
        argv: argv_p.as_ptr(),
        env: env_p.as_ptr(),
        join: -1,
        join_required: setup.cgroup_required,
        v1,
        v1_len: setup.v1.len(),
        nice: setup.nice,
        oom,
        oom_len,
        joined: false,
        step: Step::Exec,
        errno: 0,
    };
    // u128s: the stack must be 16-byte aligned.
    let mut stack = vec![0u128; CHILD_STACK / 16];
    let mut born_in = false;
    let mut ret = -(libc::ENOSYS as i64);
    if let (Some(cgroup), true) = (setup.cgroup, cfg!(target_arch = "x86_64")) {
        let mut args = CloneArgs {
            flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack.as_mut_ptr() as u64,
            stack_size: CHILD_STACK as u64,
            cgroup: cgroup.as_raw_fd() as u64,
            ..CloneArgs::default()
        };
        // SAFETY: the child runs `child` on its own stack in our memory, touching only `plan`
        // (alive until the call returns, which is after the child exec'd or exited), while this
        // thread is suspended.
        ret = with_signals_blocked(|| unsafe {
            clone3_vm(&mut args, child, (&mut plan as *mut Plan).cast())
        });
        born_in = ret > 0;
    }
    if ret < 0 {
        match -ret as i32 {
            // Not into the cgroup this way (see the module's comment): the child joins it.
            libc::ENOSYS
            | libc::EINVAL
            | libc::E2BIG
            | libc::EPERM
            | libc::EACCES
            | libc::EBUSY
            | libc::EOPNOTSUPP => {}
            errno => return Err(io::Error::from_raw_os_error(errno).into()),
        }
        plan.join = setup.cgroup.map_or(-1, |c| c.as_raw_fd());
        let top = stack.as_mut_ptr_range().end.cast::<libc::c_void>();
        // SAFETY: as above; glibc's clone(3) starts `child_c` on the top of `stack` (it grows
        // down), the way its own posix_spawn does.
        ret = with_signals_blocked(|| unsafe {
            let pid = libc::clone(
                child_c,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&mut plan as *mut Plan).cast(),
            );
            if pid < 0 {
                -(*libc::__errno_location() as i64)
            } else {
                pid as i64
            }
        });
    }
    drop(stack);
    drop(theirs);
    if ret < 0 {
        return Err(io::Error::from_raw_os_error(-ret as i32).into());
    }
    if plan.errno != 0 {
        // It exited 127; the reaper collects it (no waiter is registered for it).
        return Err(SpawnError {
            step: plan.step,
            source: io::Error::from_raw_os_error(plan.errno),
        });
    }
    let [stdin, stdout, stderr] = ours;
    Ok(Child {
        pid: ret as u32,
        stdin,
        stdout,
        stderr,
        in_cgroup: setup.cgroup.is_some() && (born_in || plan.joined),
    })
}

/// Run `f` with every signal of this thread blocked: a handler of the daemon's must not run in
/// the child, on the daemon's memory (the child unblocks them once it has reset the handlers).
fn with_signals_blocked(f: impl FnOnce() -> i64) -> i64 {
    // SAFETY: this thread's signal mask, saved and restored around `f`.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let ret = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut());
        ret
    }
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

/// `child` as glibc's clone(3) takes it.
extern "C" fn child_c(arg: *mut libc::c_void) -> libc::c_int {
    child(arg)
}

/// Write `text` to the file `path` (relative to the directory `dir`); the errno on failure.
///
/// # Safety
/// Async-signal-safe: for the child. `path` is NUL-terminated.
unsafe fn write_file(dir: RawFd, path: &[u8], text: &[u8]) -> Result<(), i32> {
    // SAFETY: the caller's; plain system calls.
    unsafe {
        let fd = libc::openat(dir, path.as_ptr().cast(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(*libc::__errno_location());
        }
        let wrote = libc::write(fd, text.as_ptr().cast(), text.len());
        let errno = *libc::__errno_location();
        libc::close(fd);
        if wrote == text.len() as isize {
            Ok(())
        } else {
            Err(errno)
        }
    }
}

/// In the child: default signal handlers and no blocked signals, its own process group (or
/// session, with its terminal), its cgroup, niceness and OOM score, its stdio, its directory,
/// exec; on any failure the step and errno go into the plan and it exits 127.
extern "C" fn child(arg: *mut libc::c_void) -> ! {
    // SAFETY: `arg` is the parent's `Plan`, alive while the parent is suspended; only system
    // call wrappers below, on descriptors and strings it prepared.
    unsafe {
        let plan = &mut *arg.cast::<Plan>();
        let fail_with = |plan: &mut Plan, step: Step, errno: i32| -> ! {
            plan.step = step;
            plan.errno = errno;
            libc::_exit(127)
        };
        let fail = |plan: &mut Plan, step: Step| -> ! {
            let errno = *libc::__errno_location();
            fail_with(plan, step, errno)
        };
        let tty = !plan.tty.is_null();
        // What the daemon handles goes back to its default before the mask opens: a handler
        // would run on the daemon's memory. SIGPIPE, which Rust's runtime ignores (and an
        // ignored signal stays ignored across exec), goes back to its default too; in a
        // terminal every signal does, or ^\ and friends would not work under a daemon started
        // with them ignored (`nohup`).
        for sig in 1..=libc::SIGRTMAX() {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, ptr::null(), &mut old) == 0
                && old.sa_sigaction != libc::SIG_DFL
                && (tty || old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, ptr::null_mut());
        if tty {
            // A session of its own, which the terminal's signals (SIGWINCH, ^C) reach.
            if libc::setsid() < 0 {
                fail(plan, Step::Exec);
            }
        } else if libc::setpgid(0, 0) != 0 {
            // Its own group, so signals and the final kill reach everything it starts.
            fail(plan, Step::Exec);
        }
        if plan.join >= 0 {
            // "0" is the writer itself; the cgroup's limits hold from here, before exec.
            match write_file(plan.join, b"cgroup.procs\0", b"0") {
                Ok(()) => plan.joined = true,
                Err(errno) if plan.join_required => fail_with(plan, Step::Cgroup, errno),
                Err(_) => {}
            }
        }
        for i in 0..plan.v1_len {
            // A hybrid host's v1 group of its limits, beside its v2 cgroup: moving is per
            // hierarchy. Memory is charged to the owner of an mm, which until exec is the
            // daemon's (shared with CLONE_VM): from exec on, the child's, here.
            if let Err(errno) = write_file(plan.v1[i], b"cgroup.procs\0", b"0") {
                fail_with(plan, Step::CgroupV1(i), errno);
            }
        }
        if let Some(nice) = plan.nice {
            // PRIO_PROCESS 0 is the calling thread on Linux, the child's only one; exec keeps
            // it. Below 0 needs CAP_SYS_NICE (or RLIMIT_NICE): EACCES.
            if libc::setpriority(libc::PRIO_PROCESS, 0, nice) != 0 {
                fail(plan, Step::Nice);
            }
        }
        if plan.oom_len > 0 {
            // A vfork child's oom_score_adj is its own: the kernel updates every process
            // sharing the memory of the writer, except when the writer is a vfork child
            // (__set_oom_adj checks vfork_done), so the daemon's is untouched. Exec keeps it.
            // Below the lowest this process may set without CAP_SYS_RESOURCE: EACCES.
            let text = &plan.oom[..plan.oom_len];
            if let Err(errno) = write_file(libc::AT_FDCWD, b"/proc/self/oom_score_adj\0", text) {
                fail_with(plan, Step::OomScoreAdj, errno);
            }
        }
        if tty {
            // Opened without O_NOCTTY by a session leader with no terminal, it becomes the
            // controlling one (what TIOCSCTTY does after a fork). Not close-on-exec.
            let fd = libc::open(plan.tty, libc::O_RDWR);
            if fd < 0 {
                fail(plan, Step::Exec);
            }
            for target in 0..3 {
                if fd != target && libc::dup2(fd, target) < 0 {
                    fail(plan, Step::Exec);
                }
            }
            if fd > 2 {
                libc::close(fd);
            }
        } else {
            for (target, &fd) in plan.fds.iter().enumerate() {
                let target = target as RawFd;
                if fd == target {
                    // dup2 onto itself keeps close-on-exec: clear it instead.
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        fail(plan, Step::Exec);
                    }
                } else if libc::dup2(fd, target) < 0 {
                    fail(plan, Step::Exec);
                }
            }
        }
        if !plan.cwd.is_null() && libc::chdir(plan.cwd) != 0 {
            fail(plan, Step::Exec);
        }
        libc::execve(plan.program, plan.argv, plan.env);
        fail(plan, Step::Exec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn output(child: Child) -> String {
        drop(child.stderr);
        let mut out = String::new();
        std::fs::File::from(child.stdout.expect("piped"))
            .read_to_string(&mut out)
            .unwrap();
        // SAFETY: waits for the child just spawned (a test's reaper may have taken it: ECHILD).
        unsafe { libc::waitpid(child.pid as i32, ptr::null_mut(), 0) };
        out
    }

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
        let setup = Setup {
            cgroup: Some(&fd),
            ..Setup::default()
        };
        let pipes = || Stdio::Pipes { stdin: false };
        let child = spawn(Path::new("/bin/sh"), &argv, &env, pipes(), &setup).unwrap();
        assert!(child.in_cgroup);
        let out = output(child);
        assert!(out.contains(&format!("{name}/p-1")), "{out}");

        let missing = spawn(Path::new("/no/such/program"), &argv, &env, pipes(), &setup);
        let e = missing.err().expect("exec of a missing program fails");
        // (Its child exited 127, left for whoever reaps this test process's children.)
        assert_eq!(e.step, Step::Exec);
        assert_eq!(e.source.raw_os_error(), Some(libc::ENOENT));
        drop(fd);
        super::super::cgroup::remove(&dir);
        cgroups.remove_all();
    }

    #[test]
    fn a_child_that_cannot_join_a_v1_group_fails_at_that_step() {
        // A directory that is no cgroup: it has no cgroup.procs to write.
        let dir = std::env::temp_dir().join(format!("tend-unit-v1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fd: OwnedFd = std::fs::File::open(&dir).unwrap().into();
        let argv = ["true".to_string()];
        let env = BTreeMap::new();
        let setup = Setup {
            v1: vec![fd.as_raw_fd()],
            ..Setup::default()
        };
        let e = spawn(
            Path::new("/bin/true"),
            &argv,
            &env,
            Stdio::Pipes { stdin: false },
            &setup,
        )
        .err()
        .expect("joining fails");
        assert_eq!(e.step, Step::CgroupV1(0));
        assert_eq!(e.source.raw_os_error(), Some(libc::ENOENT));
        drop(fd);
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn without_a_cgroup_the_child_still_gets_its_niceness_before_exec() {
        let argv = [
            "sh".to_string(),
            "-c".into(),
            "cut -d' ' -f19 /proc/self/stat".into(),
        ];
        let env = BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]);
        let setup = Setup {
            nice: Some(7),
            ..Setup::default()
        };
        let child = spawn(
            Path::new("/bin/sh"),
            &argv,
            &env,
            Stdio::Pipes { stdin: false },
            &setup,
        )
        .unwrap();
        assert!(!child.in_cgroup);
        // The daemon's niceness plus nothing: setpriority sets, it does not add.
        assert_eq!(output(child).trim(), "7");
    }

    #[test]
    fn a_terminal_child_leads_a_session_with_the_terminal_as_its_own() {
        use portable_pty::{native_pty_system, PtySize};
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 24,
                cols: 80,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let tty = pair.master.tty_name().unwrap();
        let mut reader = pair.master.try_clone_reader().unwrap();
        // Session id (field 6) and the controlling terminal's device (7), then niceness (19).
        let argv = [
            "sh".to_string(),
            "-c".into(),
            "echo $$ $(cut -d' ' -f6,7,19 /proc/$$/stat)".into(),
        ];
        let env = BTreeMap::from([("PATH".to_string(), "/usr/bin:/bin".to_string())]);
        let setup = Setup {
            nice: Some(4),
            ..Setup::default()
        };
        let child = spawn(Path::new("/bin/sh"), &argv, &env, Stdio::Tty(&tty), &setup).unwrap();
        assert!(child.stdout.is_none() && !child.in_cgroup);
        drop(pair.slave);
        let mut out = Vec::new();
        let mut buf = [0u8; 256];
        // EIO once the child closes the terminal: the end.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        // SAFETY: waits for the child just spawned.
        unsafe { libc::waitpid(child.pid as i32, ptr::null_mut(), 0) };
        let text = String::from_utf8_lossy(&out);
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(fields.len(), 4, "{text}");
        assert_eq!(fields[0], child.pid.to_string(), "{text}");
        assert_eq!(fields[1], fields[0], "a session leader: {text}");
        assert_ne!(fields[2], "0", "a controlling terminal: {text}");
        assert_eq!(fields[3], "4", "{text}");
    }
}
