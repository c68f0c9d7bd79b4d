//! Children start with every signal at its default, whatever the daemon inherited.
//!
//! A daemon started in the background by a shell (`tend serve &` in a script) inherits SIGINT and
//! SIGQUIT ignored, and under `nohup` SIGHUP too; exec keeps an ignored signal ignored, so its
//! children would silently ignore them as well. std's Command (posix_spawn, no pre_exec) resets
//! only SIGPIPE. Exec does reset *handled* signals, so the daemon replaces each inherited ignore
//! with a handler that does nothing: the daemon still ignores the signal, its children do not.

/// Does nothing, which is what the daemon inherited; its only effect is that exec resets it.
extern "C" fn ignore(_: libc::c_int) {}

/// Replace every inherited SIG_IGN (bar the ones the daemon manages itself) with a no-op handler.
pub fn reset_inherited_ignores() {
    for sig in 1..libc::SIGRTMIN() {
        // SIGKILL and SIGSTOP cannot be caught; SIGPIPE std resets for children itself (and the
        // daemon needs it ignored); SIGCHLD belongs to the reaper.
        if matches!(
            sig,
            libc::SIGKILL | libc::SIGSTOP | libc::SIGPIPE | libc::SIGCHLD
        ) {
            continue;
        }
        // SAFETY: sigaction(2) queries and installs a handler that touches nothing; SA_RESTART
        // keeps the daemon's own system calls from seeing EINTR because of it.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                || old.sa_sigaction != libc::SIG_IGN
            {
                continue;
            }
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = ignore as extern "C" fn(libc::c_int) as libc::sighandler_t;
            new.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut new.sa_mask);
            libc::sigaction(sig, &new, std::ptr::null_mut());
        }
    }
}
