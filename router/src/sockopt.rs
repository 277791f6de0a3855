//! Deferred accept: the one place the router asks the kernel something socket2 cannot.
//!
//! With `TCP_DEFER_ACCEPT`, the kernel completes a client's TCP handshake but hands the
//! connection to `accept` only once the client has sent its first bytes (an HTTP request line
//! or a TLS ClientHello; in both protocols the client speaks first). Accepting and reading then
//! take one wake-up of the worker instead of two, which was a quarter of the worker's sleeps
//! per new TLS connection in the router benchmark, and a client that connects and never speaks
//! costs the router nothing: it stays in the kernel until the deferral ends and is then handed
//! over like any other, where the handshake and header timeouts deal with it.

#![allow(unsafe_code)]

use std::time::Duration;

/// Asks the kernel to hold a listener's new connections until their first bytes arrive, for
/// at most about `wait`. Elsewhere than on Linux this does nothing.
pub(crate) fn defer_accept(listener: &socket2::Socket, wait: Duration) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let seconds = libc::c_int::try_from(wait.as_secs()).unwrap_or(libc::c_int::MAX);
        let len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).expect("an int's size fits");
        // SAFETY: TCP_DEFER_ACCEPT reads one c_int from the pointer, which points at a live,
        // aligned c_int whose size is passed; the descriptor is borrowed from a live socket.
        let rc = unsafe {
            libc::setsockopt(
                listener.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&raw const seconds).cast::<libc::c_void>(),
                len,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (listener, wait);
    Ok(())
}
