//! `[feed]`: how a remote data plane reaches the control API whose snapshots it follows.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How a remote data plane (`wharf router --control-api URL`, `wharf logshuttle --control-api
/// URL`) reaches the control API. The feed carries certificates' private keys and drain
/// credentials, so it travels over HTTPS, verified, unless the control API is on this machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// PEM file of the CA that signs the control API's certificate, trusted beside the Mozilla
    /// roots when `--control-api` is an `https://` URL.
    pub control_api_ca: Option<PathBuf>,
    /// Lets `--control-api` be a plain `http://` URL whose host is not a loopback address. The
    /// feed then crosses the network in clear, token and secrets included: only for a network
    /// that is itself encrypted and trusted (a WireGuard link, say). Off by default.
    pub allow_cleartext: bool,
}
