//! `[feed]`: how a remote data plane reaches the control API whose snapshots it follows.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use wharf_domain::units::HumanDuration;

/// How a remote data plane (`wharf router --control-api URL`, `wharf logshuttle --control-api
/// URL`) reaches the control API. The feed carries certificates' private keys and drain
/// credentials, so it travels over HTTPS, verified, unless the control API is on this machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// PEM file of the CA that signs the control API's certificate, trusted beside the
    /// system's trust store (`wharf_domain::trust`) when `--control-api` is an `https://` URL.
    pub control_api_ca: Option<PathBuf>,
    /// Lets `--control-api` be a plain `http://` URL whose host is not a loopback address. The
    /// feed then crosses the network in clear, token and secrets included: only for a network
    /// that is itself encrypted and trusted (a WireGuard link, say). Off by default.
    pub allow_cleartext: bool,
    /// How long a data plane waits for a line of the watch stream (a snapshot or the control
    /// API's heartbeat, sent every second), or for the control API's answer, before it takes the
    /// replica for hung and follows the next one: `"5s"` by default, five heartbeats, so that a
    /// late heartbeat on a busy machine does not cause a reconnection while a stopped or
    /// partitioned replica costs the data planes at most that long. At least `"2s"`. A control
    /// API older than this setting sends a heartbeat only every 10 s: upgrade the control APIs
    /// first, or set `"35s"` until then.
    pub silence_timeout: HumanDuration,
}

impl Default for FeedConfig {
    fn default() -> FeedConfig {
        FeedConfig { control_api_ca: None, allow_cleartext: false, silence_timeout: HumanDuration::secs(5) }
    }
}
