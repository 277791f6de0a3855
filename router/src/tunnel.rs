//! A WebSocket (or other HTTP/1.1 upgrade, RFC 9110, section 7.8) after the dyno's 101: the
//! client's and the dyno's connections joined into a byte tunnel, with an idle limit.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Copies an upgraded connection both ways until both sides close, or until neither has sent
/// anything for `idle`. Returns the bytes sent to the client.
pub(crate) async fn tunnel(
    mut client: impl AsyncRead + AsyncWrite + Unpin,
    mut dyno: impl AsyncRead + AsyncWrite + Unpin,
    idle: std::time::Duration,
) -> u64 {
    let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut client_open, mut dyno_open) = (true, true);
    let mut sent = 0u64;
    while client_open || dyno_open {
        let step = tokio::time::timeout(idle, async {
            tokio::select! {
                r = client.read(&mut up), if client_open => match r {
                    Ok(0) | Err(_) => { client_open = false; let _ = dyno.shutdown().await; Ok(()) }
                    Ok(n) => dyno.write_all(&up[..n]).await,
                },
                r = dyno.read(&mut down), if dyno_open => match r {
                    Ok(0) | Err(_) => { dyno_open = false; let _ = client.shutdown().await; Ok(()) }
                    Ok(n) => { sent += n as u64; client.write_all(&down[..n]).await }
                },
            }
        })
        .await;
        if !matches!(step, Ok(Ok(()))) {
            break;
        }
    }
    sent
}
