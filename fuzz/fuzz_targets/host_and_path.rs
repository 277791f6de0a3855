//! Route table building, host normalisation and route lookup: never panic; a normalised host is
//! lowercase with no port; lookup agrees with a naive longest-prefix search over the same
//! routes; a rewrite starts with `/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_domain::{AppSpec, DynoSpec, RoutePath, RouteSpec, SiteDomain, SiteSpec, Snapshot};
use wharf_router::RoutingTable;
use wharf_router::table::normalize_host;

fuzz_target!(|data: (Vec<(&str, &str, &str)>, &str, &str)| {
    let (routes, host, path) = data;
    if let Some(h) = normalize_host(host) {
        assert!(!h.bytes().any(|b| b.is_ascii_uppercase()), "{h}");
    }
    let app = |i: usize| format!("app{}-default", i % 3).parse().unwrap();
    let apps = (0..3)
        .map(|i| AppSpec {
            id: Default::default(),
            key: app(i),
            internal: false,
            maintenance: None,
            web_dynos: vec![DynoSpec { name: "web.1".parse().unwrap(), host: "127.0.0.1".parse().unwrap(), port: 1 }],
        })
        .collect();
    // Every well-formed (domain, source, target) becomes a route; the first source per domain wins.
    let mut sites: Vec<SiteSpec> = Vec::new();
    for (i, (domain, source, target)) in routes.iter().enumerate() {
        let (Ok(domain), Ok(source_path), Ok(target_path)) =
            (SiteDomain::try_new(domain), RoutePath::try_new(source), RoutePath::try_new(target))
        else {
            continue;
        };
        let site = match sites.iter_mut().position(|s| s.domain == domain) {
            Some(i) => &mut sites[i],
            None => {
                sites.push(SiteSpec { id: Default::default(), domain, internal: false, routes: vec![] });
                sites.last_mut().unwrap()
            }
        };
        if site.routes.iter().all(|r| r.source_path != source_path) {
            site.routes.push(RouteSpec { id: Default::default(), source_path, target_path, app: app(i) });
        }
    }
    let snapshot = Snapshot { version: 1, apps, sites: sites.clone(), ..Snapshot::default() };
    let table = RoutingTable::compile(&snapshot, "localhost", None);
    let Some(h) = normalize_host(host) else { return };
    let got = table.host(&h).and_then(|e| e.route(path));

    // The naive answer: the exact site, else the wildcard one label up; then the longest source
    // path that is the whole path or a prefix followed by `/`.
    let site = sites.iter().find(|s| s.domain.as_str() == h).or_else(|| {
        let parent = h.split_once('.')?.1;
        sites.iter().find(|s| s.domain.wildcard_parent() == Some(parent))
    });
    if h.ends_with(".localhost") && site.is_none() {
        return; // A default domain: covered by the unit tests.
    }
    let want = site.and_then(|s| {
        s.routes
            .iter()
            .filter(|r| {
                let p = r.source_path.prefix();
                path.starts_with('/') && path.starts_with(p) && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
            })
            .max_by_key(|r| r.source_path.prefix().len())
    });
    assert_eq!(got.map(|r| &*r.prefix), want.map(|r| r.source_path.prefix()), "{h} {path}");
    if let Some(route) = got {
        assert!(route.rewrite(path).starts_with('/'));
    }
});
