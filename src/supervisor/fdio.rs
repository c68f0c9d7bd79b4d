//! Non-blocking descriptors driven by the tokio reactor: the PTY master and the stdin pipe are
//! read and written from tasks, not from a thread per process.
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::output::{Output, StreamKind};

/// Hand `fd` to the reactor.
pub fn register(fd: OwnedFd, interest: Interest) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is open until dropped, and the AsyncFd owns it from here on, so its
    // as_raw_fd stays the same open descriptor for the AsyncFd's whole life.
    Ok(unsafe { AsyncFd::register_with_interest(fd, interest) }?)
}

pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl(2) flag changes on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// write(2), retrying interruptions.
pub fn write(fd: &OwnedFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: write(2) from a live slice to a descriptor we own.
    retrying(|| unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) })
}

/// read(2), retrying interruptions.
fn read(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: read(2) into a live slice from a descriptor we own.
    retrying(|| unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// Call a read(2)-like function until it is not interrupted.
fn retrying(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Read a PTY master (a dup of it) into an output log until end of file: EIO, once every slave
/// end is closed. Takes the log, not the process, so that any backend's terminal can use it.
pub async fn read_pty(fd: OwnedFd, output: &Output) -> io::Result<()> {
    set_nonblocking(&fd)?;
    let fd = register(fd, Interest::READABLE)?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let mut ready = fd.readable().await?;
        // Behind a lossless reader the terminal is left unread, so the program blocks on its
        // write until the reader catches up. Asked once data is there: a hold taken while this
        // task waited for it must limit this read.
        let room = output.room(StreamKind::Pty, buf.len()).await;
        match ready.try_io(|fd| read(fd.get_ref(), &mut buf[..room])) {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
            Ok(Ok(n)) => output.append(StreamKind::Pty, &buf[..n]),
            Err(_would_block) => {}
        }
    }
}
