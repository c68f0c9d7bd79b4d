//! posix_spawn of a child in a new session whose controlling terminal is a PTY slave, so that PTY
//! processes are spawned like pipe processes: by vfork, at a cost that does not grow with the
//! daemon's memory (fork copies its page tables), with no code of ours running in the child.
use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Owns the spawn attributes and file actions, destroyed on every way out.
struct Setup {
    attr: libc::posix_spawnattr_t,
    actions: libc::posix_spawn_file_actions_t,
}

impl Drop for Setup {
    fn drop(&mut self) {
        // SAFETY: both were initialised before a Setup was built.
        unsafe {
            libc::posix_spawnattr_destroy(&mut self.attr);
            libc::posix_spawn_file_actions_destroy(&mut self.actions);
        }
    }
}

/// Spawn `program` with `argv` and exactly `env`, in `cwd`, in a new session with `tty` as its
/// stdin, stdout, stderr and controlling terminal. Returns the PID (which is also its process
/// group and session id).
pub fn spawn(
    program: &Path,
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: Option<&Path>,
    tty: &Path,
) -> io::Result<u32> {
    let program = cstring(program.as_os_str().as_bytes())?;
    let argv: Vec<CString> = argv
        .iter()
        .map(|a| cstring(a.as_bytes()))
        .collect::<io::Result<_>>()?;
    let env: Vec<CString> = env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").as_bytes()))
        .collect::<io::Result<_>>()?;
    let tty = cstring(tty.as_os_str().as_bytes())?;
    let cwd = cwd.map(|c| cstring(c.as_os_str().as_bytes())).transpose()?;
    let mut argv_p: Vec<*mut libc::c_char> = argv.iter().map(|s| s.as_ptr().cast_mut()).collect();
    argv_p.push(ptr::null_mut());
    let mut env_p: Vec<*mut libc::c_char> = env.iter().map(|s| s.as_ptr().cast_mut()).collect();
    env_p.push(ptr::null_mut());

    // SAFETY: plain libc calls on structures we initialise first and destroy in Setup's drop; every
    // pointer passed (CStrings and the arrays of them) outlives the posix_spawn call.
    unsafe {
        let mut setup = Setup {
            attr: std::mem::zeroed(),
            actions: std::mem::zeroed(),
        };
        check(libc::posix_spawnattr_init(&mut setup.attr))?;
        if let Err(e) = check(libc::posix_spawn_file_actions_init(&mut setup.actions)) {
            libc::posix_spawnattr_destroy(&mut setup.attr);
            return Err(e);
        }
        // glibc applies POSIX_SPAWN_SETSID before the file actions, so the open below happens in
        // a session leader with no controlling terminal: opening a terminal without O_NOCTTY
        // makes it the controlling one (what TIOCSCTTY does after a fork), and SIGWINCH reaches
        // the child's foreground group on resize.
        let flags = libc::POSIX_SPAWN_SETSID
            | (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short;
        check(libc::posix_spawnattr_setflags(&mut setup.attr, flags))?;
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        check(libc::posix_spawnattr_setsigmask(&mut setup.attr, &none))?;
        // Ignored signals survive exec: the daemon ignores SIGPIPE (Rust's runtime does), and a
        // daemon started in the background by a shell ignores SIGQUIT too. A program in a
        // terminal starts with every signal at its default, or ^\ and friends would not work.
        let mut defaults: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut defaults);
        check(libc::posix_spawnattr_setsigdefault(
            &mut setup.attr,
            &defaults,
        ))?;
        if let Some(cwd) = &cwd {
            check(libc::posix_spawn_file_actions_addchdir_np(
                &mut setup.actions,
                cwd.as_ptr(),
            ))?;
        }
        check(libc::posix_spawn_file_actions_addopen(
            &mut setup.actions,
            0,
            tty.as_ptr(),
            libc::O_RDWR,
            0,
        ))?;
        check(libc::posix_spawn_file_actions_adddup2(
            &mut setup.actions,
            0,
            1,
        ))?;
        check(libc::posix_spawn_file_actions_adddup2(
            &mut setup.actions,
            0,
            2,
        ))?;
        let mut pid: libc::pid_t = 0;
        check(libc::posix_spawn(
            &mut pid,
            program.as_ptr(),
            &setup.actions,
            &setup.attr,
            argv_p.as_ptr(),
            env_p.as_ptr(),
        ))?;
        Ok(pid as u32)
    }
}
