//! Host normalisation and route lookup: never panic; a normalised host is lowercase with no
//! port; a matched route's prefix is a segment-boundary prefix of the path, and its rewrite
//! starts with `/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_config::{AppSpec, DynoSpec, Snapshot};
use wharf_router::RoutingTable;
use wharf_router::table::normalize_host;

fuzz_target!(|data: (&str, &str)| {
    let (host, path) = data;
    if let Some(h) = normalize_host(host) {
        assert!(!h.bytes().any(|b| b.is_ascii_uppercase()), "{h}");
    }
    let snapshot = Snapshot {
        version: 1,
        apps: vec![AppSpec {
            id: Default::default(),
            key: "api-default".parse().unwrap(),
            internal: false,
            web_dynos: vec![DynoSpec { name: "web.1".parse().unwrap(), host: "127.0.0.1".parse().unwrap(), port: 1 }],
        }],
        drains: vec![],
    };
    let table = RoutingTable::compile(&snapshot, "localhost", None);
    let Some(entry) = normalize_host(host).as_deref().and_then(|h| table.host(h)) else { return };
    if let Some(route) = entry.route(path) {
        assert!(path.starts_with(&*route.prefix));
        let rest = &path[route.prefix.len()..];
        assert!(rest.is_empty() || rest.starts_with('/'), "{path} matched {}", route.prefix);
        if path.starts_with('/') {
            assert!(route.rewrite(path).starts_with('/'));
        }
    }
});
