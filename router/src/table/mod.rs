//! The routing table: an immutable map from host and path to an app's dynos, compiled from a
//! snapshot and swapped in whole.
//!
//! Lookups cost a hash of the host and one hash per path segment, whatever the number of
//! routes. Dyno health (quarantine) lives in [`Dyno`]s that a new table inherits from the
//! old one by endpoint, so a reload neither forgets a failing dyno nor resets a healthy one.

mod dynos;

pub use dynos::{Busy, CanaryRoute, Chosen, Dyno, RESOLVED_FOR, WebDynos, millis_at};

use std::collections::HashMap;

/// The page an app in maintenance mode answers with when it names none of its own
/// (`MAINTENANCE_PAGE_URL`): unstyled HTML, as Heroku's router serves.
pub const DEFAULT_MAINTENANCE_PAGE: &str = "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n\
<title>Offline for maintenance</title>\n</head>\n<body>\n<h1>Offline for maintenance</h1>\n\
<p>This app is undergoing maintenance right now. Please check back later.</p>\n</body>\n</html>\n";

/// Maps keyed by hosts and paths use foldhash: fast, and seeded per process. The keys are the
/// operator's, so request input can only look up, never shape, the table.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A set of dyno addresses.
pub(crate) type AddrSet = std::collections::HashSet<SocketAddr, foldhash::fast::RandomState>;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use uuid::Uuid;
use wharf_domain::{CanaryState, Hostname, Snapshot};

use crate::canary::Canary;

/// A path prefix on a host, and where it goes.
#[derive(Debug)]
pub struct Route {
    /// The prefix without a trailing slash; empty for the root.
    pub prefix: Box<str>,
    /// The path the prefix is replaced with, without a trailing slash; empty for the root.
    pub target: Box<str>,
    /// The app's web dynos.
    pub web_dynos: Arc<WebDynos>,
}

impl Route {
    /// Whether the route sends paths unchanged (`/` to `/`).
    pub fn is_identity(&self) -> bool {
        self.prefix.is_empty() && self.target.is_empty()
    }

    /// The path the dyno gets for a request path this route matched.
    pub fn rewrite(&self, path: &str) -> String {
        let rest = &path[self.prefix.len()..];
        let mut out = String::with_capacity(self.target.len() + rest.len() + 1);
        out.push_str(&self.target);
        out.push_str(rest);
        if out.is_empty() {
            out.push('/');
        }
        out
    }
}

/// Everything served on one host.
#[derive(Debug)]
pub struct HostEntry {
    /// Served only on the internal listener.
    pub internal: bool,
    /// The site's domain, for site drains; `None` for an app's default domain.
    pub site: Option<Arc<str>>,
    routes: Map<Box<str>, Route>,
    /// The length of the longest prefix: shorter candidates are all a lookup needs to try.
    longest: usize,
}

impl HostEntry {
    /// The route with the longest prefix that matches `path` on a segment boundary: `/foo`
    /// matches `/foo` and `/foo/x`, never `/foobar`.
    pub fn route(&self, path: &str) -> Option<&Route> {
        // Only origin-form paths route; `*` (OPTIONS *) and anything else do not.
        if !path.starts_with('/') {
            return None;
        }
        let mut end = path.len();
        if end > self.longest {
            // The longest candidate that ends on a segment boundary within reach.
            end = path.as_bytes()[..=self.longest].iter().rposition(|&b| b == b'/').unwrap_or(0);
        }
        loop {
            let candidate = &path[..end];
            let candidate = if candidate == "/" { "" } else { candidate };
            if let Some(r) = self.routes.get(candidate) {
                return Some(r);
            }
            if candidate.is_empty() {
                return None;
            }
            end = path[..end].rfind('/').unwrap_or(0);
        }
    }
}

/// The compiled routing table.
#[derive(Debug, Default)]
pub struct RoutingTable {
    /// The snapshot version it was compiled from.
    pub version: u64,
    hosts: Map<Box<str>, HostEntry>,
    /// `*.example.com` entries, keyed by `example.com`.
    wildcards: Map<Box<str>, HostEntry>,
    /// Every dyno, by endpoint: the next table inherits them, health and all.
    dynos: Map<(Hostname, u16), Arc<Dyno>>,
    /// Every app's web dynos, by app key.
    apps: Map<Box<str>, Arc<WebDynos>>,
    /// The addresses of `dynos`, computed once per table for the pools' pruning.
    dyno_addrs: Arc<AddrSet>,
    /// Running canaries, by id: their counts carry over to the next table.
    canaries: Map<Uuid, Arc<Canary>>,
    /// Dynos earlier tables had and this one does not, while anything (a request at one) still
    /// holds them: their requests in flight hold a stopping dyno's process (see
    /// [`RoutingTable::in_flight`]).
    leaving: Vec<Weak<Dyno>>,
}

impl RoutingTable {
    /// Builds the table for a snapshot, keeping the health of dynos `previous` knew.
    ///
    /// Every app is served on its default domain, `app-space.<stack_domain>`; sites add their
    /// own domains, exact or wildcard. The control API keeps the two apart, and should a site
    /// still name a default domain, the site wins: it is the more specific intent.
    ///
    /// A new dyno registered by host name is resolved here, with the system's blocking resolver,
    /// so call this off any event loop that serves requests; one `previous` knew keeps its
    /// resolution.
    pub fn compile(snapshot: &Snapshot, stack_domain: &str, previous: Option<&RoutingTable>) -> RoutingTable {
        let mut table = RoutingTable { version: snapshot.version, ..RoutingTable::default() };
        let stack_domain = stack_domain.to_ascii_lowercase();
        for app in &snapshot.apps {
            let dynos = app
                .web_dynos
                .iter()
                .map(|d| {
                    let key = (d.host.clone(), d.port);
                    let dyno = previous
                        .and_then(|p| p.dynos.get(&key))
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Dyno::new(d.name.as_str(), &d.host, d.port)));
                    table.dynos.insert(key, dyno.clone());
                    dyno
                })
                .collect();
            let stats =
                previous.and_then(|p| p.apps.get(app.key.as_str())).map_or_else(Arc::default, |b| b.stats.clone());
            let maintenance = app.maintenance.as_ref().map(|page| match &page.html {
                Some(html) => bytes::Bytes::from(html.clone()),
                None => bytes::Bytes::from_static(DEFAULT_MAINTENANCE_PAGE.as_bytes()),
            });
            let web_dynos = Arc::new(WebDynos::new(app.key.as_str().into(), dynos, stats, None, maintenance));
            table.apps.insert(app.key.as_str().into(), web_dynos);
        }
        // A canary replaces its app's web dynos with a set that splits. The canary app's set
        // is taken before any replacement, so that splits never chain.
        let plain = if snapshot.canaries.is_empty() { Map::default() } else { table.apps.clone() };
        for c in &snapshot.canaries {
            let (Some(base), Some(target)) = (plain.get(c.app.as_str()), plain.get(c.canary.as_str())) else {
                continue;
            };
            let judged = match c.state {
                CanaryState::Aborted => {
                    // Aborted elsewhere (another router's verdict, or by hand): the requests
                    // this router has waiting at the canary are answered now.
                    if let Some(running) = previous.and_then(|p| p.canaries.get(&c.id)) {
                        running.end();
                    }
                    continue;
                }
                CanaryState::Promoted => None,
                CanaryState::Running => {
                    let canary = previous.and_then(|p| p.canaries.get(&c.id)).cloned().unwrap_or_else(|| {
                        Arc::new(Canary::new(c.id, base.app.clone(), target.app.clone(), c.policy.clone()))
                    });
                    table.canaries.insert(c.id, canary.clone());
                    Some(canary)
                }
            };
            // Maintenance mode pauses the split (the canary keeps its counts for later): an app
            // in maintenance answers every request with its page, the canary's share included,
            // and a canary app in maintenance takes no share, so the app it splits serves all.
            // A canary app with no web dyno (not yet healthy, after a restart, or crashed) takes
            // no share either: the router would answer it with its own H14, which judges no code.
            if base.maintenance.is_some() || target.maintenance.is_some() || target.dynos.is_empty() {
                continue;
            }
            let route = CanaryRoute { web_dynos: target.clone(), judged };
            let split = WebDynos::new(base.app.clone(), base.dynos.clone(), base.stats.clone(), Some(route), None);
            table.apps.insert(c.app.as_str().into(), Arc::new(split));
        }
        for app in &snapshot.apps {
            let web_dynos = table.apps[app.key.as_str()].clone();
            let host = format!("{}.{stack_domain}", app.key);
            let route = Route { prefix: "".into(), target: "".into(), web_dynos };
            let entry = HostEntry {
                internal: app.internal,
                site: None,
                routes: [("".into(), route)].into_iter().collect(),
                longest: 0,
            };
            table.hosts.insert(host.into(), entry);
        }
        for site in &snapshot.sites {
            let mut entry = HostEntry {
                internal: site.internal,
                site: Some(site.domain.as_str().into()),
                routes: Map::default(),
                longest: 0,
            };
            for r in &site.routes {
                // A route to an app the snapshot does not have cannot be served; the control API
                // never publishes one, so this only guards against a hand-made snapshot.
                let Some(web_dynos) = table.apps.get(r.app.as_str()) else { continue };
                let prefix = r.source_path.prefix();
                entry.longest = entry.longest.max(prefix.len());
                let route = Route {
                    prefix: prefix.into(),
                    target: r.target_path.prefix().into(),
                    web_dynos: web_dynos.clone(),
                };
                entry.routes.insert(prefix.into(), route);
            }
            match site.domain.wildcard_parent() {
                Some(parent) => table.wildcards.insert(parent.into(), entry),
                None => table.hosts.insert(site.domain.as_str().into(), entry),
            };
        }
        table.dyno_addrs = Arc::new(table.dynos.values().filter_map(|d| d.known_addr()).collect());
        if let Some(p) = previous {
            let left =
                p.dynos.iter().filter(|(key, _)| !table.dynos.contains_key(*key)).map(|(_, d)| Arc::downgrade(d));
            let still = p.leaving.iter().filter(|d| d.strong_count() > 0).cloned();
            table.leaving = left.chain(still).collect();
        }
        table
    }

    /// How many requests are at the dynos listening at `addr` now, whether this table still
    /// routes to them or they left it (a dyno being stopped): a stopping dyno's process is kept
    /// until this is 0 or its `request_grace` passes.
    pub fn in_flight(&self, addr: SocketAddr) -> usize {
        let current = self.dynos.values().filter(|d| d.known_addr() == Some(addr)).map(|d| d.in_flight());
        let left = self.leaving.iter().filter_map(Weak::upgrade);
        current.sum::<usize>() + left.filter(|d| d.known_addr() == Some(addr)).map(|d| d.in_flight()).sum::<usize>()
    }

    /// The addresses of the dynos that left this table (being stopped) and still have requests
    /// at them, each with [`RoutingTable::in_flight`]'s count there: what a router in a process
    /// of its own reports for the supervisor's wait (`wharf router`). Each address once.
    pub fn leaving_in_flight(&self) -> Vec<(SocketAddr, usize)> {
        let mut addrs: Vec<SocketAddr> =
            self.leaving.iter().filter_map(Weak::upgrade).filter_map(|d| d.known_addr()).collect();
        addrs.sort_unstable();
        addrs.dedup();
        addrs.into_iter().map(|a| (a, self.in_flight(a))).filter(|(_, n)| *n > 0).collect()
    }

    /// The entry for a normalized host: exact first, then a wildcard one label up.
    pub fn host(&self, host: &str) -> Option<&HostEntry> {
        self.hosts.get(host).or_else(|| host.split_once('.').and_then(|(_, parent)| self.wildcards.get(parent)))
    }

    /// A running canary, by id.
    pub fn canary(&self, id: Uuid) -> Option<&Arc<Canary>> {
        self.canaries.get(&id)
    }

    /// Every app's web dynos.
    pub fn apps(&self) -> impl Iterator<Item = &Arc<WebDynos>> {
        self.apps.values()
    }

    /// The addresses of every dyno the table routes to (a host name's as resolved when the
    /// table was built); the pools keep idle connections to these only.
    pub(crate) fn dyno_addrs(&self) -> &Arc<AddrSet> {
        &self.dyno_addrs
    }

    /// How many hosts the table serves.
    pub fn len(&self) -> usize {
        self.hosts.len() + self.wildcards.len()
    }

    /// Whether the table serves nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A host as routing compares it: lowercase, without port or trailing dot. `None` when the
/// text cannot be a host.
pub fn normalize_host(raw: &str) -> Option<String> {
    normalize_host_bytes(raw.as_bytes())
}

/// [`normalize_host`] for a host as it came in a header field's bytes.
pub fn normalize_host_bytes(b: &[u8]) -> Option<String> {
    let mut host = String::new();
    push_normalized_host(b, &mut host).then_some(host)
}

/// Appends the host in `b` (a header field's bytes), normalized as [`normalize_host`] does,
/// to `out`; `false`, and `out` unchanged, when the bytes cannot be a host. Lowercased in a
/// buffer on the stack, so routing a request allocates nothing for its host but the room the
/// caller made in `out` (see `access_log::RequestText`).
pub(crate) fn push_normalized_host(b: &[u8], out: &mut String) -> bool {
    let end = if b.first() == Some(&b'[') {
        // An IPv6 literal, with or without a port.
        match b.iter().position(|&c| c == b']') {
            Some(close) => close + 1,
            None => return false,
        }
    } else {
        match b.iter().rposition(|&c| c == b':') {
            Some(colon) if b[colon + 1..].iter().all(u8::is_ascii_digit) => colon,
            _ => b.len(),
        }
    };
    let host = &b[..end];
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST {
        return false;
    }
    // One pass maps each byte to its lowercase form and finds any the table refuses (0).
    let mut lower = [0u8; MAX_HOST];
    let mut refused = false;
    for (to, &c) in lower.iter_mut().zip(host) {
        *to = HOST_BYTES[usize::from(c)];
        refused |= *to == 0;
    }
    // Every byte is one of the ASCII characters the table allows, so the text is UTF-8.
    match std::str::from_utf8(&lower[..host.len()]) {
        Ok(text) if !refused => {
            out.push_str(text);
            true
        }
        _ => false,
    }
}

/// The longest host name, in bytes (RFC 1035, section 2.3.4, in text form).
const MAX_HOST: usize = 253;

/// The bytes a host may hold, each mapped to its lowercase form; 0 for those it may not.
static HOST_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'[' | b']' | b':' => b,
            b'A'..=b'Z' => b.to_ascii_lowercase(),
            _ => 0,
        };
        c += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use wharf_domain::{AppSpec, DynoSpec};

    fn snapshot(apps: &[(&str, &[u16])]) -> Snapshot {
        Snapshot {
            version: 7,
            apps: apps
                .iter()
                .map(|(key, ports)| AppSpec {
                    id: wharf_domain::new_id(),
                    key: key.parse().unwrap(),
                    internal: false,
                    maintenance: None,
                    web_dynos: ports
                        .iter()
                        .enumerate()
                        .map(|(i, p)| DynoSpec {
                            name: format!("web.{i}").parse().unwrap(),
                            host: "127.0.0.1".parse().unwrap(),
                            port: *p,
                        })
                        .collect(),
                })
                .collect(),
            drains: vec![],
            sites: vec![],
            certs: vec![],
            canaries: vec![],
            images: vec![],
        }
    }

    #[test]
    fn default_domains_route_to_their_app() {
        let t = RoutingTable::compile(&snapshot(&[("api-default", &[1, 2]), ("web-prod", &[3])]), "Localhost", None);
        assert_eq!(t.version, 7);
        let check = |host: &str, want: Option<&str>| {
            let got = t.host(host).and_then(|h| h.route("/x")).map(|r| &*r.web_dynos.app);
            assert_eq!(got, want, "{host}");
        };
        check("api-default.localhost", Some("api-default"));
        check("web-prod.localhost", Some("web-prod"));
        check("nope-default.localhost", None);
        check("localhost", None);
        let entry = t.host("api-default.localhost").unwrap();
        assert!(entry.route("*").is_none() && entry.route("").is_none() && entry.route(".").is_none());
    }

    fn site(domain: &str, internal: bool, routes: &[(&str, &str, &str)]) -> wharf_domain::SiteSpec {
        wharf_domain::SiteSpec {
            id: wharf_domain::new_id(),
            domain: domain.parse().unwrap(),
            internal,
            routes: routes
                .iter()
                .map(|(source, app, target)| wharf_domain::RouteSpec {
                    id: wharf_domain::new_id(),
                    source_path: source.parse().unwrap(),
                    target_path: target.parse().unwrap(),
                    app: app.parse().unwrap(),
                })
                .collect(),
        }
    }

    #[test]
    fn sites_route_by_longest_prefix_and_rewrite() {
        let mut s = snapshot(&[("www-prod", &[1]), ("api-prod", &[2]), ("docs-prod", &[3]), ("tenant-prod", &[4])]);
        s.sites = vec![
            site(
                "www.example.com",
                false,
                &[
                    ("/", "www-prod", "/"),
                    ("/api", "api-prod", "/"),
                    ("/api/v2", "api-prod", "/v2"),
                    ("/docs/", "docs-prod", "/help"),
                ],
            ),
            site("*.example.com", false, &[("/", "tenant-prod", "/t")]),
            site("api-prod.localhost", false, &[("/", "docs-prod", "/")]),
        ];
        let t = RoutingTable::compile(&s, "localhost", None);
        // (host as sent, path) => (app, path the dyno gets); None means 404.
        let check = |raw_host: &str, path: &str, want: Option<(&str, &str)>| {
            let host = normalize_host(raw_host).unwrap();
            let got = t.host(&host).and_then(|h| h.route(path)).map(|r| (&*r.web_dynos.app, r.rewrite(path)));
            assert_eq!(got.as_ref().map(|(a, p)| (*a, p.as_str())), want, "{raw_host} {path}");
        };
        check("www.example.com", "/", Some(("www-prod", "/")));
        check("WWW.Example.COM:443", "/about", Some(("www-prod", "/about")));
        check("www.example.com.", "/apix", Some(("www-prod", "/apix")));
        check("www.example.com", "/api", Some(("api-prod", "/")));
        check("www.example.com", "/api/", Some(("api-prod", "/")));
        check("www.example.com", "/api/users/7", Some(("api-prod", "/users/7")));
        check("www.example.com", "/api/v2", Some(("api-prod", "/v2")));
        check("www.example.com", "/api/v2/users", Some(("api-prod", "/v2/users")));
        check("www.example.com", "/api/v20", Some(("api-prod", "/v20")));
        check("www.example.com", "/docs", Some(("docs-prod", "/help")));
        check("www.example.com", "/docs/a/b", Some(("docs-prod", "/help/a/b")));
        check("acme.example.com", "/x", Some(("tenant-prod", "/t/x")));
        check("a.b.example.com", "/x", None);
        check("example.com", "/x", None);
        check("www-prod.localhost", "/x", Some(("www-prod", "/x")));
        // A site on a default domain wins over the app's default route.
        check("api-prod.localhost", "/x", Some(("docs-prod", "/x")));
        check("nope.localhost", "/", None);
    }

    #[test]
    fn round_robin_skips_quarantined_dynos() {
        let t = RoutingTable::compile(&snapshot(&[("api-default", &[1, 2, 3])]), "localhost", None);
        let b = &t.host("api-default.localhost").unwrap().route("/").unwrap().web_dynos;
        let ports: Vec<u16> = (0..6).map(|_| b.pick(0).unwrap().port).collect();
        assert_eq!(ports, [1, 2, 3, 1, 2, 3]);
        b.dynos[1].quarantine(100);
        let ports: Vec<u16> = (0..4).map(|_| b.pick(50).unwrap().port).collect();
        assert_eq!(ports, [1, 3, 1, 3]);
        assert_eq!((0..3).map(|_| b.pick(100).unwrap().port).collect::<Vec<_>>(), [1, 2, 3]);
        for d in b.dynos.iter() {
            d.quarantine(200);
        }
        assert!(b.pick(150).is_some(), "all quarantined still tries one");
    }

    #[test]
    fn health_survives_a_reload() {
        let s = snapshot(&[("api-default", &[1, 2])]);
        let t1 = RoutingTable::compile(&s, "localhost", None);
        let first =
            |t: &RoutingTable| t.host("api-default.localhost").unwrap().route("/").unwrap().web_dynos.dynos[0].clone();
        first(&t1).quarantine(1000);
        first(&t1).mark_reached();
        let t2 = RoutingTable::compile(&s, "localhost", Some(&t1));
        assert!(first(&t2).is_quarantined(10));
        // Whether the router ever reached a dyno decides whether its failed connects are
        // judged: a reload must not make a crashed dyno look like a stale registration.
        assert!(first(&t2).was_reached());
        assert!(!t2.host("api-default.localhost").unwrap().route("/").unwrap().web_dynos.dynos[1].was_reached());
    }

    #[test]
    fn host_names_resolve_when_the_table_is_built() {
        let mut s = snapshot(&[("api-default", &[1])]);
        s.apps[0].web_dynos[0].host = "localhost".parse().unwrap();
        let before = Instant::now();
        let t = RoutingTable::compile(&s, "localhost", None);
        let dyno = &t.host("api-default.localhost").unwrap().route("/").unwrap().web_dynos.dynos[0];
        assert_eq!(dyno.addr, None, "not an IP literal");
        let addr = dyno.fresh_addr(before).expect("resolved when the table was built");
        assert!(addr.ip().is_loopback() && addr.port() == 1, "{addr}");
        assert_eq!(t.dyno_addrs().iter().copied().collect::<Vec<_>>(), [addr]);
        assert_eq!(dyno.fresh_addr(Instant::now() + RESOLVED_FOR), None, "resolved again once stale");
        // A reload inherits the dyno, and its resolution with it.
        let t2 = RoutingTable::compile(&s, "localhost", Some(&t));
        assert!(Arc::ptr_eq(dyno, &t2.host("api-default.localhost").unwrap().route("/").unwrap().web_dynos.dynos[0]));
    }

    /// A canary `id` of api-default to next-default at 25%, in `state`.
    fn next_default_canary(id: Uuid, state: CanaryState) -> wharf_domain::CanarySpec {
        let policy = wharf_domain::CanaryPolicy::with_weight(wharf_domain::Weight::from_percent(25.0).unwrap());
        let (app, canary) = ("api-default".parse().unwrap(), "next-default".parse().unwrap());
        wharf_domain::CanarySpec { id, app, canary, policy, state }
    }

    #[test]
    fn canaries_split_promote_and_abort() {
        let mut s = snapshot(&[("api-default", &[1]), ("next-default", &[2])]);
        let id = wharf_domain::new_id();
        let canary = |state| next_default_canary(id, state);
        let ports = |t: &RoutingTable, n: usize| -> Vec<u16> {
            let b = &t.host("api-default.localhost").unwrap().route("/").unwrap().web_dynos;
            (0..n)
                .map(|_| {
                    let chosen = b.choose();
                    if let Some((c, arm)) = &chosen.judged {
                        c.record(*arm, crate::canary::Outcome::Status(200));
                    }
                    chosen.web_dynos.pick(0).unwrap().port
                })
                .collect()
        };
        s.canaries = vec![canary(CanaryState::Running)];
        let t1 = RoutingTable::compile(&s, "localhost", None);
        assert_eq!(ports(&t1, 8), [1, 1, 1, 2, 1, 1, 1, 2]);
        // The canary app itself is not split, and a reload keeps the counts.
        assert!(t1.host("next-default.localhost").unwrap().route("/").unwrap().web_dynos.canary.is_none());
        let t2 = RoutingTable::compile(&s, "localhost", Some(&t1));
        assert_eq!(t2.canary(id).unwrap().evidence().canary.requests, 2);
        s.canaries = vec![canary(CanaryState::Promoted)];
        let t3 = RoutingTable::compile(&s, "localhost", Some(&t2));
        assert_eq!(ports(&t3, 4), [2, 2, 2, 2]);
        assert!(t3.canary(id).is_none(), "a promoted canary is not judged");
        s.canaries = vec![canary(CanaryState::Aborted)];
        let t4 = RoutingTable::compile(&s, "localhost", Some(&t3));
        assert_eq!(ports(&t4, 4), [1, 1, 1, 1]);
    }

    /// What a router in a process of its own reports for the supervisor's wait: its requests
    /// at the dynos that left its table, each address once, and nothing for one without any.
    #[test]
    fn the_requests_at_dynos_that_left_the_table_are_reported_by_address() {
        let s = snapshot(&[("api-default", &[1, 2, 3])]);
        let t1 = RoutingTable::compile(&s, "localhost", None);
        let dynos = t1.host("api-default.localhost").unwrap().route("/").unwrap().web_dynos.dynos.clone();
        let (_a, _b, _c) = (Busy::new(dynos[0].clone()), Busy::new(dynos[0].clone()), Busy::new(dynos[2].clone()));
        assert_eq!(t1.leaving_in_flight(), [], "no dyno left yet");
        // Dynos 1 and 2 leave (2 with no request at it); 3 stays with its request.
        let t2 = RoutingTable::compile(&snapshot(&[("api-default", &[3])]), "localhost", Some(&t1));
        let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(t2.leaving_in_flight(), [(at(1), 2)]);
        // Still reported by the next table, until the requests end.
        let t3 = RoutingTable::compile(&snapshot(&[("api-default", &[3])]), "localhost", Some(&t2));
        assert_eq!(t3.leaving_in_flight(), [(at(1), 2)]);
        drop((_a, _b));
        assert_eq!(t3.leaving_in_flight(), [], "their requests ended");
    }

    /// A canary aborted elsewhere (another router's verdict, or by hand) wakes this router's
    /// requests waiting at it; a promoted one does not.
    #[tokio::test]
    async fn a_canary_the_snapshot_says_aborted_ends_here() {
        let mut s = snapshot(&[("api-default", &[1]), ("next-default", &[2])]);
        let id = wharf_domain::new_id();
        let canary = |state| next_default_canary(id, state);
        for (state, ends) in [(CanaryState::Promoted, false), (CanaryState::Aborted, true)] {
            s.canaries = vec![canary(CanaryState::Running)];
            let t1 = RoutingTable::compile(&s, "localhost", None);
            let running = t1.canary(id).unwrap().clone();
            let waiting = tokio::spawn(async move { running.ended().await });
            tokio::task::yield_now().await;
            s.canaries = vec![canary(state)];
            let _t2 = RoutingTable::compile(&s, "localhost", Some(&t1));
            // `timeout` polls the future before its deadline: ready now, or not at all.
            let now = tokio::time::timeout(std::time::Duration::ZERO, t1.canary(id).unwrap().ended()).await.is_ok();
            assert_eq!(now, ends, "{state:?}");
            if ends {
                let woken = tokio::time::timeout(std::time::Duration::from_secs(10), waiting).await;
                woken.expect("the request waiting before the abort was woken").expect("no panic");
            } else {
                waiting.abort();
            }
        }
    }

    #[test]
    fn hosts_normalize() {
        for (raw, want) in [
            ("Api-Default.LOCALHOST", Some("api-default.localhost")),
            ("api-default.localhost:8443", Some("api-default.localhost")),
            ("api-default.localhost.", Some("api-default.localhost")),
            ("[::1]:8443", Some("[::1]")),
            ("", None),
            ("a b", None),
            ("a/b", None),
        ] {
            assert_eq!(normalize_host(raw).as_deref(), want, "{raw:?}");
        }
    }
}
