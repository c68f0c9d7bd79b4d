//! The local terminal during `tend run --pty`: raw mode, restored on every way out.
use std::os::fd::BorrowedFd;

use nix::sys::termios::{self, SetArg, Termios};

/// Raw mode on stdin until dropped.
pub struct RawMode(Termios);

impl RawMode {
    /// Put the terminal in raw mode; `None` when stdin is not a terminal.
    pub fn enter() -> Option<RawMode> {
        let fd = stdin();
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(stdin(), SetArg::TCSANOW, &self.0);
    }
}

fn stdin() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// The local terminal's size (rows, cols), if stdout is a terminal.
pub fn size() -> Option<(u32, u32)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the struct we pass.
    let rc = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then(|| (ws.ws_row.into(), ws.ws_col.into()))
}

/// On every SIGWINCH, send this terminal's new size as `make(size)` until the receiver is gone.
pub fn forward_resize<T: Send + 'static>(
    tx: tokio::sync::mpsc::Sender<T>,
    make: fn(crate::pb::PtySize) -> T,
) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut winch) = signal(SignalKind::window_change()) else {
            return;
        };
        while winch.recv().await.is_some() {
            if let Some((rows, cols)) = size() {
                if tx
                    .send(make(crate::pb::PtySize { rows, cols }))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
}
