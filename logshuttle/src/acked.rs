//! Whether a TCP receiver has acknowledged everything written to it: the one place the
//! logshuttle asks the kernel something the standard library cannot.
//!
//! A successful write only means the bytes are in this host's send buffer. If the logshuttle
//! died then, the kernel would keep trying to send them from an orphaned socket, and may give
//! up. So a batch counts as delivered, and its offsets may be committed, only once the
//! receiver's TCP has acknowledged every byte: the socket's output queue (`SIOCOUTQ`, unsent
//! plus unacknowledged bytes) is empty.

#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

/// Bytes written to the socket that the peer has not acknowledged yet. On systems without
/// `SIOCOUTQ` this is always 0: a write counts as delivered.
pub(crate) fn unacked(socket: &impl AsRawFd) -> std::io::Result<usize> {
    #[cfg(target_os = "linux")]
    {
        let mut n: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ for sockets) writes one c_int through the pointer, which
        // points at a live, aligned c_int; the descriptor is borrowed from a live socket.
        let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(usize::try_from(n).unwrap_or(0))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn counts_what_the_peer_has_not_acknowledged() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert_eq!(unacked(&client).unwrap(), 0);
        // Far more than the peer's receive window while it does not read.
        client.set_nonblocking(true).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        let mut written = 0;
        while written < 64 << 20 {
            match client.write(&chunk) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(unacked(&client).unwrap() > 0, "a peer that does not read cannot acknowledge everything");
        client.set_nonblocking(false).unwrap();
        let mut sink = vec![0u8; 1 << 20];
        let mut read = 0;
        while read < written {
            read += server.read(&mut sink).unwrap();
        }
        // The acknowledgement of the last bytes travels back over loopback.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while unacked(&client).unwrap() > 0 {
            assert!(std::time::Instant::now() < deadline, "never acknowledged");
            std::thread::yield_now();
        }
    }
}
