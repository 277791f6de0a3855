//! Whether a TCP receiver has acknowledged everything written to it: the one place the
//! logshuttle asks the kernel something the standard library cannot.
//!
//! A successful write only means the bytes are in this host's send buffer. If the logshuttle
//! died then, the kernel would keep trying to send them from an orphaned socket, and may give
//! up. So a batch counts as delivered, and its offsets may be committed, only once the
//! receiver's TCP has acknowledged every byte: the socket's output queue (`SIOCOUTQ`, unsent
//! plus unacknowledged bytes) is empty, or, in one system call where the writer counts what it
//! wrote, the bytes the peer acknowledged (`TCP_INFO`'s `tcpi_bytes_acked`) have reached that
//! count.

#![allow(unsafe_code)]

use std::os::fd::AsRawFd;

/// What one `getsockopt(TCP_INFO)` says of a TCP connection (Linux's `struct tcp_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpInfo {
    /// The connection's state (`tcpi_state`): [`ESTABLISHED`], [`CLOSE_WAIT`], ...
    pub(crate) state: u8,
    /// Bytes the peer's TCP has acknowledged since the connection began (`tcpi_bytes_acked`,
    /// RFC 4898's `tcpEStatsAppHCThruOctetsAcked`; the SYN counts as one). Only
    /// acknowledgements move it: a reset that purges the unsent and unacknowledged bytes does
    /// not, so it never counts bytes the peer did not take.
    pub(crate) bytes_acked: u64,
}

/// `TCP_ESTABLISHED`: open both ways.
pub(crate) const ESTABLISHED: u8 = 1;
/// `TCP_CLOSE_WAIT`: the peer has closed its side (sent FIN); it still acknowledges what it
/// receives.
pub(crate) const CLOSE_WAIT: u8 = 8;

/// The state and acknowledged bytes of a TCP connection, in one system call; `None` where the
/// kernel's `tcp_info` has no `tcpi_bytes_acked` (before Linux 4.1) or on other systems.
pub(crate) fn tcp_info(socket: &impl AsRawFd) -> std::io::Result<Option<TcpInfo>> {
    #[cfg(target_os = "linux")]
    {
        // `struct tcp_info` has grown with the kernel (about 250 bytes in 6.x); the fields read
        // here sit at fixed offsets: `tcpi_state` at 0, `tcpi_bytes_acked` (u64) at 120.
        const BYTES_ACKED: usize = 120;
        let mut buf = [0u64; 32];
        let mut len = std::mem::size_of_val(&buf) as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `buf`, which is live, 8-byte
        // aligned and `len` bytes long, and stores the length it wrote in `len`; the
        // descriptor is borrowed from a live socket.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                buf.as_mut_ptr().cast::<libc::c_void>(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if (len as usize) < BYTES_ACKED + 8 {
            return Ok(None);
        }
        let state = buf[0].to_ne_bytes()[0];
        Ok(Some(TcpInfo { state, bytes_acked: buf[BYTES_ACKED / 8] }))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        Ok(None)
    }
}

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

    /// `tcpi_bytes_acked` and `tcpi_state`, read at their offsets, say what the kernel says:
    /// the SYN and then every byte the peer took, and the peer's close.
    #[test]
    fn tcp_info_reads_the_acknowledged_bytes_and_the_state() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let first = tcp_info(&client).unwrap().expect("Linux 4.1 or later says tcpi_bytes_acked");
        assert_eq!(first, TcpInfo { state: ESTABLISHED, bytes_acked: 1 }, "the SYN is the one byte acknowledged");
        client.write_all(&[b'x'; 1000]).unwrap();
        let mut got = [0u8; 1000];
        server.read_exact(&mut got).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while tcp_info(&client).unwrap().unwrap().bytes_acked < 1001 {
            assert!(std::time::Instant::now() < deadline, "never acknowledged");
            std::thread::yield_now();
        }
        assert_eq!(tcp_info(&client).unwrap().unwrap().bytes_acked, 1001, "no more than was written");
        drop(server);
        while tcp_info(&client).unwrap().unwrap().state != CLOSE_WAIT {
            assert!(std::time::Instant::now() < deadline, "the peer's close never seen");
            std::thread::yield_now();
        }
    }

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
