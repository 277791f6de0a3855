//! The outbound-destination policy: which addresses Wharf may connect to for a URL a user gave
//! it (log drains now; build sources, webhooks and maintenance pages as they arrive).
//!
//! Users aim these URLs at the platform's own network as readily as at the internet, so every
//! such connection goes through one [`Policy`]: link-local (the cloud metadata address
//! 169.254.169.254 among them), multicast, broadcast and unspecified addresses are always
//! refused; loopback and private ranges are allowed or refused by configuration
//! (`[outbound] allow_loopback`, `allow_private`, both `true` by default so that `wharf serve`
//! on one machine reaches receivers beside it). A URL whose host is an IP literal is checked
//! when it is given (a 422); a name is checked on every address it resolves to, at connect
//! time, so a name that later resolves elsewhere is caught. Ranges are those of the IANA IPv4
//! and IPv6 Special-Purpose Address Registries (RFC 6890): RFC 1918 and RFC 6598 (shared) and
//! RFC 4193 (unique local) are private; RFC 3927 and RFC 4291 §2.5.6 link-local.
//!
//! An IPv6 address that carries an IPv4 address the network may deliver to is judged by that
//! IPv4 address, so that no IPv6 spelling reaches what the IPv4 one may not: IPv4-mapped
//! (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), IPv4-compatible (`::a.b.c.d`, §2.5.5.1, deprecated
//! but still routed by some stacks), the NAT64 well-known prefix (`64:ff9b::a.b.c.d`, RFC 6052:
//! a NAT64 gateway forwards it to the IPv4 address, 169.254.169.254 included), 6to4
//! (`2002:AABB:CCDD::/48`, RFC 3056) and Teredo (`2001:0::/32`, RFC 4380, whose client address
//! is the last 32 bits inverted). The local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215) embeds
//! its IPv4 address where the operator's prefix length says, which Wharf cannot know: it is
//! private, as the operator's own translator.
//!
//! Every URL a user gives (drain, webhook, build source, maintenance page) checks its host with
//! [`Policy::check_host`] when it is given, and every address a name resolves to with
//! [`Policy::check`] before it is dialled. A refusal is permanent: the same URL is refused
//! again until the URL or the policy changes, so callers do not retry it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

/// Which destinations outbound connections may reach: `[outbound]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Loopback addresses (127.0.0.0/8, ::1): receivers on the same machine. Default `true`.
    pub allow_loopback: bool,
    /// Private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7): the platform's own
    /// network. Default `true`.
    pub allow_private: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { allow_loopback: true, allow_private: true }
    }
}

/// The kind of an address that the policy looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressKind {
    /// An ordinary, globally routed address.
    Public,
    /// 127.0.0.0/8 or ::1.
    Loopback,
    /// RFC 1918, RFC 6598 shared, RFC 4193 unique-local, or deprecated site-local addresses.
    Private,
    /// 169.254.0.0/16 or fe80::/10: never a receiver; the cloud metadata service lives here.
    LinkLocal,
    /// 224.0.0.0/4 or ff00::/8.
    Multicast,
    /// 255.255.255.255, or the reserved 240.0.0.0/4 around it.
    Broadcast,
    /// 0.0.0.0/8 or `::`: "this host", which reaches the local machine on some systems.
    Unspecified,
}

impl AddressKind {
    /// The kind of `ip`; an IPv6 address that embeds an IPv4 address (see [`embedded_ipv4`])
    /// is the kind of that IPv4 address.
    pub fn of(ip: IpAddr) -> AddressKind {
        match ip {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) => match embedded_ipv4(v6) {
                Some(v4) => Self::of_v4(v4),
                None => Self::of_v6(v6),
            },
        }
    }

    fn of_v4(ip: Ipv4Addr) -> AddressKind {
        let [a, b, ..] = ip.octets();
        if a == 0 {
            AddressKind::Unspecified
        } else if ip.is_loopback() {
            AddressKind::Loopback
        } else if ip.is_link_local() {
            AddressKind::LinkLocal
        } else if ip.is_multicast() {
            AddressKind::Multicast
        } else if a >= 240 {
            AddressKind::Broadcast
        } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
            AddressKind::Private
        } else {
            AddressKind::Public
        }
    }

    fn of_v6(ip: Ipv6Addr) -> AddressKind {
        let first = ip.segments()[0];
        if ip.is_unspecified() {
            AddressKind::Unspecified
        } else if ip.is_loopback() {
            AddressKind::Loopback
        } else if ip.is_multicast() {
            AddressKind::Multicast
        } else if first & 0xffc0 == 0xfe80 {
            AddressKind::LinkLocal
        } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 || ip.segments()[..3] == [0x64, 0xff9b, 1] {
            AddressKind::Private
        } else {
            AddressKind::Public
        }
    }

    fn describe(self) -> &'static str {
        match self {
            AddressKind::Public => "public",
            AddressKind::Loopback => "a loopback address",
            AddressKind::Private => "a private address",
            AddressKind::LinkLocal => "a link-local address",
            AddressKind::Multicast => "a multicast address",
            AddressKind::Broadcast => "a broadcast or reserved address",
            AddressKind::Unspecified => "the unspecified address",
        }
    }
}

/// The IPv4 address an IPv6 address delivers to, when it embeds one: IPv4-mapped
/// (`::ffff:0:0/96`), IPv4-compatible (`::/96` but `::` and `::1`), NAT64 well-known
/// (`64:ff9b::/96`), 6to4 (`2002::/16`, bits 16 to 47) and Teredo (`2001:0::/32`, the client's
/// address inverted in the last 32 bits). `None` for any other address.
pub fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let last = Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(last),
        [0, 0, 0, 0, 0, 0, _, _] if !ip.is_unspecified() && !ip.is_loopback() => Some(last),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last),
        [0x2002, a, b, ..] => Some(Ipv4Addr::from((u32::from(a) << 16) | u32::from(b))),
        [0x2001, 0, ..] => Some(Ipv4Addr::from(!u32::from(last))),
        _ => None,
    }
}

/// Why the policy refused an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is {}, which the outbound policy refuses{}", kind.describe(), hint(*kind))]
pub struct Refused {
    /// The address.
    pub ip: IpAddr,
    /// What kind of address it is.
    pub kind: AddressKind,
}

fn hint(kind: AddressKind) -> &'static str {
    match kind {
        AddressKind::Loopback => " (allowed with [outbound] allow_loopback = true)",
        AddressKind::Private => " (allowed with [outbound] allow_private = true)",
        _ => "",
    }
}

impl Policy {
    /// Whether a connection to `ip` is allowed; a [`Refused`] that names the address and its
    /// kind when not.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let kind = AddressKind::of(ip);
        let allowed = match kind {
            AddressKind::Public => true,
            AddressKind::Loopback => self.allow_loopback,
            AddressKind::Private => self.allow_private,
            AddressKind::LinkLocal | AddressKind::Multicast | AddressKind::Broadcast | AddressKind::Unspecified => {
                false
            }
        };
        if allowed { Ok(()) } else { Err(Refused { ip, kind }) }
    }

    /// Checks a URL's host as given (an IP literal, with or without IPv6 brackets, or a name):
    /// a literal is checked now; a name is checked on every address it resolves to when it is
    /// dialled ([`Policy::check`]). Hosts are validated as [`crate::Hostname`]s first, which
    /// refuses the numeric forms resolvers read as IPv4 addresses (`127.1`, `0x7f000001`).
    pub fn check_host(&self, host: &str) -> Result<(), Refused> {
        let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        match bare.parse::<IpAddr>() {
            Ok(ip) => self.check(ip),
            Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_defaults() {
        let open = Policy::default();
        let closed = Policy { allow_loopback: false, allow_private: false };
        for (ip, kind) in [
            ("8.8.8.8", AddressKind::Public),
            ("2001:4860::8888", AddressKind::Public),
            ("127.0.0.1", AddressKind::Loopback),
            ("127.9.9.9", AddressKind::Loopback),
            ("::1", AddressKind::Loopback),
            ("::ffff:127.0.0.1", AddressKind::Loopback),
            ("10.1.2.3", AddressKind::Private),
            ("172.16.0.1", AddressKind::Private),
            ("192.168.1.1", AddressKind::Private),
            ("100.64.0.1", AddressKind::Private),
            ("fd00::1", AddressKind::Private),
            ("169.254.169.254", AddressKind::LinkLocal),
            ("::ffff:169.254.169.254", AddressKind::LinkLocal),
            ("fe80::1", AddressKind::LinkLocal),
            ("224.0.0.1", AddressKind::Multicast),
            ("ff02::1", AddressKind::Multicast),
            ("255.255.255.255", AddressKind::Broadcast),
            ("0.0.0.0", AddressKind::Unspecified),
            ("::", AddressKind::Unspecified),
            // IPv6 spellings of IPv4 addresses are the IPv4 address's kind.
            ("::ffff:7f00:1", AddressKind::Loopback),
            ("::ffff:10.0.0.1", AddressKind::Private),
            ("::ffff:8.8.8.8", AddressKind::Public),
            ("::127.0.0.1", AddressKind::Loopback),
            ("::169.254.169.254", AddressKind::LinkLocal),
            ("::8.8.8.8", AddressKind::Public),
            ("64:ff9b::7f00:1", AddressKind::Loopback),
            ("64:ff9b::a9fe:a9fe", AddressKind::LinkLocal),
            ("64:ff9b::192.168.0.1", AddressKind::Private),
            ("64:ff9b::0.0.0.0", AddressKind::Unspecified),
            ("64:ff9b::8.8.8.8", AddressKind::Public),
            ("2002:7f00:1::1", AddressKind::Loopback),
            ("2002:a9fe:a9fe::", AddressKind::LinkLocal),
            ("2002:0a00:0001::", AddressKind::Private),
            ("2002:0808:0808::1", AddressKind::Public),
            // Teredo: the client's address inverted, 127.0.0.1 as 80ff:fffe.
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", AddressKind::Loopback),
            ("2001:0:4136:e378:8000:63bf:5601:5601", AddressKind::LinkLocal),
            ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", AddressKind::Public),
            ("64:ff9b:1::a9fe:a9fe", AddressKind::Private),
            // Not embeddings: ordinary IPv6 addresses near them.
            ("64:ff9b:2::1", AddressKind::Public),
            ("2001:db9::1", AddressKind::Public),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(AddressKind::of(ip), kind, "{ip}");
            let always_refused = !matches!(kind, AddressKind::Public | AddressKind::Loopback | AddressKind::Private);
            assert_eq!(open.check(ip).is_err(), always_refused, "{ip} by default");
            assert_eq!(closed.check(ip).is_err(), kind != AddressKind::Public, "{ip} with both refused");
        }
        // Hosts as URLs give them: an IP literal (bracketed or not) is checked, a name is not yet.
        for (host, refused_when_closed) in [
            ("[::1]", true),
            ("[64:ff9b::7f00:1]", true),
            ("[::127.0.0.1]", true),
            ("::ffff:127.0.0.1", true),
            ("127.0.0.1", true),
            ("[2606:4700::1]", false),
            ("example.com", false),
            ("localhost", false),
        ] {
            assert_eq!(closed.check_host(host).is_err(), refused_when_closed, "{host}");
            assert!(open.check_host(host).is_ok(), "{host} by default");
        }
        assert!(open.check_host("[64:ff9b::a9fe:a9fe]").is_err(), "NAT64 of the metadata address, always");
        let e = closed.check("127.0.0.1".parse().unwrap()).unwrap_err().to_string();
        assert!(e.contains("loopback") && e.contains("allow_loopback"), "{e}");
    }
}
