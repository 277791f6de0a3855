//! A web dyno's health check, which decides when the dyno is registered with the router and
//! whether a new release is healthy.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::procfs;

/// A web dyno's health check: the port is listened on by a process of the dyno's group
/// `pgid` (not by another release's dyno that holds a fixed port; 0 skips this), a TCP
/// connect to it on 127.0.0.1 within 2 s, then, when it has a `healthcheck` path, an HTTP/1.1
/// `GET` of it (RFC 9112) answered within 5 s with a 2xx or 3xx status.
///
/// The request is written by hand rather than with hyper's client: the check needs one fixed
/// request and the status line's first digit, and the client would add its connection
/// machinery (and hyper's `client` feature) to the supervisor for that.
pub(crate) async fn probe(port: u16, healthcheck: Option<&str>, pgid: i32) -> bool {
    if pgid != 0 && !listens(port, pgid) {
        return false;
    }
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
        return false;
    };
    let Some(path) = healthcheck else {
        return true;
    };
    let check = async {
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.ok()?;
        // `HTTP/1.x NNN`: the status code's first digit is the tenth byte (RFC 9112 section 4).
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.") && matches!(head[9], b'2' | b'3'))
    };
    tokio::time::timeout(Duration::from_secs(5), check).await.ok().flatten().unwrap_or(false)
}

/// Whether a process of group `pgid` holds a socket listening on `port`.
fn listens(port: u16, pgid: i32) -> bool {
    let listening = procfs::listening_sockets(port);
    !listening.is_empty() && procfs::group_sockets(pgid).iter().any(|s| listening.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    /// A server that answers every connection with `head` once it has read a request head.
    async fn answering(head: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut s = BufReader::new(s);
                    let mut line = String::new();
                    while s.read_line(&mut line).await.is_ok_and(|n| n > 0) && line != "\r\n" {
                        line.clear();
                    }
                    let _ = s.get_mut().write_all(head.as_bytes()).await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn the_health_check_wants_a_connection_or_a_2xx_or_3xx_answer() {
        let closed = crate::process::free_port().unwrap();
        assert!(!probe(closed, None, 0).await, "nothing listens");
        let ok = answering("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        assert!(probe(ok, None, 0).await);
        assert!(probe(ok, Some("/health"), 0).await);
        let redirect = answering("HTTP/1.1 302 Found\r\nLocation: /\r\n\r\n").await;
        assert!(probe(redirect, Some("/health"), 0).await);
        let unavailable = answering("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert!(probe(unavailable, None, 0).await, "a TCP connect is enough without a path");
        assert!(!probe(unavailable, Some("/health"), 0).await);
        let not_http = answering("SSH-2.0-OpenSSH_9.6\r\n").await;
        assert!(!probe(not_http, Some("/health"), 0).await);
    }

    #[tokio::test]
    async fn a_port_another_process_group_listens_on_does_not_pass() {
        let ok = answering("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        let me = procfs::stat(std::process::id() as i32).unwrap().pgrp;
        assert!(probe(ok, None, me).await, "this test's group listens");
        let mut other =
            tokio::process::Command::new("sleep").arg("30").process_group(0).kill_on_drop(true).spawn().unwrap();
        let other_group = other.id().unwrap() as i32;
        assert!(!probe(ok, None, other_group).await, "the answer comes from someone else's listener");
        other.kill().await.unwrap();
    }
}
