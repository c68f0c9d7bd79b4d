//! Signals, through one typed call each: kill(2) and killpg(2) as the `nix` crate gives them,
//! so that "no such process" (ESRCH) is an error value the caller sees, not an errno to
//! remember to check.
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// Why a signal was not sent.
pub type Result = nix::Result<()>;

fn typed(sig: i32) -> nix::Result<Signal> {
    Signal::try_from(sig)
}

/// Send `sig` to every process in group `pgid`.
pub fn to_group(pgid: u32, sig: i32) -> Result {
    signal::killpg(Pid::from_raw(pgid as i32), typed(sig)?)
}

/// Send `sig` to process `pid` only.
pub fn to_process(pid: u32, sig: i32) -> Result {
    signal::kill(Pid::from_raw(pid as i32), typed(sig)?)
}

/// Whether group `pgid` has any process left (zombies included): kill(2) with no signal.
pub fn group_exists(pgid: u32) -> bool {
    signal::killpg(Pid::from_raw(pgid as i32), None).is_ok()
}

/// Whether kill(2) said the target is gone.
pub fn is_gone(e: &nix::Error) -> bool {
    *e == nix::Error::ESRCH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_is_signalled_and_a_gone_one_says_so() {
        use std::os::unix::process::{CommandExt, ExitStatusExt};
        let mut child = std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id();
        assert!(group_exists(pgid));
        to_group(pgid, libc::SIGTERM).unwrap();
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
        assert!(!group_exists(pgid));
        let e = to_group(pgid, libc::SIGTERM).unwrap_err();
        assert!(is_gone(&e), "{e}");
        assert!(to_process(pgid, 12345).is_err(), "not a signal");
    }
}
