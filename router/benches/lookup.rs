//! Route lookup cost and memory per route, for tables of 10, 1,000 and 100,000 routes: apps'
//! default domains (one route per host), and sites with ten routes each, nested prefixes up to
//! four segments deep.
//!
//! `cargo bench -p wharf-router --bench lookup`. Lookup should not grow with the number of
//! routes: it is one hash of the host and one per path segment.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use wharf_domain::{AppSpec, DynoSpec, RouteSpec, SiteSpec, Snapshot};
use wharf_router::RoutingTable;

fn snapshot(n: usize) -> Snapshot {
    let apps = (0..n)
        .map(|i| AppSpec {
            id: uuid::Uuid::from_u128(i as u128),
            key: format!("app{i}-space{}", i % 97).parse().expect("valid key"),
            internal: false,
            maintenance: None,
            web_dynos: vec![DynoSpec {
                name: "web.1".parse().expect("valid dyno"),
                host: "127.0.0.1".parse().expect("valid host"),
                port: 10_000 + (i % 50_000) as u16,
            }],
        })
        .collect();
    Snapshot { version: 1, apps, drains: vec![], ..Snapshot::default() }
}

/// Routes per site in the site tables.
const ROUTES_PER_SITE: usize = 10;

/// `n` routes on `n / 10` sites, each routing `/`, `/s1` ... `/s3/a/b/c` to ten apps.
fn site_snapshot(n: usize) -> Snapshot {
    let mut snap = snapshot(ROUTES_PER_SITE);
    let prefixes = ["/", "/s1", "/s1/a", "/s1/a/b", "/s2", "/s2/a", "/s2/a/b/c", "/s3", "/s3/a/b", "/s3/a/b/c"];
    snap.sites = (0..n / ROUTES_PER_SITE)
        .map(|i| SiteSpec {
            id: uuid::Uuid::from_u128(i as u128),
            domain: format!("www{i}.example.com").parse().expect("valid domain"),
            internal: false,
            routes: prefixes
                .iter()
                .enumerate()
                .map(|(j, p)| RouteSpec {
                    id: uuid::Uuid::from_u128((i * ROUTES_PER_SITE + j) as u128),
                    source_path: p.parse().expect("valid path"),
                    target_path: "/".parse().expect("valid path"),
                    app: snap.apps[j].key.clone(),
                })
                .collect(),
        })
        .collect();
    snap
}

/// Resident memory of this process, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// One kind of table: how to build it for `n` routes, the host of the `i`th lookup, the path.
struct Kind {
    name: &'static str,
    snapshot: fn(usize) -> Snapshot,
    host: fn(usize, usize) -> String,
    path: &'static str,
}

const KINDS: [Kind; 2] = [
    Kind {
        name: "route lookup",
        snapshot,
        host: |i, n| format!("app{}-space{}.apps.example.com", (i * 7919) % n, ((i * 7919) % n) % 97),
        path: "/api/v1/users/42",
    },
    Kind {
        name: "site route lookup",
        snapshot: site_snapshot,
        host: |i, n| format!("www{}.example.com", (i * 7919) % (n / ROUTES_PER_SITE)),
        path: "/s2/a/b/c/orders/42",
    },
];

fn lookup(c: &mut Criterion) {
    const SIZES: [usize; 3] = [10, 1_000, 100_000];
    // Memory first, with every table alive at once: freed tables would otherwise be reused by
    // the next size and hide its growth.
    let mut alive = Vec::new();
    for kind in &KINDS {
        for n in SIZES {
            let snap = (kind.snapshot)(n);
            let copies = (50_000 / n).max(1);
            let before = rss();
            alive.push((0..copies).map(|_| RoutingTable::compile(&snap, "apps.example.com", None)).collect::<Vec<_>>());
            eprintln!("{}, {n} routes: {} bytes per route", kind.name, rss().saturating_sub(before) / (n * copies));
        }
    }
    drop(alive);

    for kind in &KINDS {
        let mut group = c.benchmark_group(kind.name);
        for n in SIZES {
            let table = RoutingTable::compile(&(kind.snapshot)(n), "apps.example.com", None);
            let hosts: Vec<String> = (0..1024).map(|i| (kind.host)(i, n)).collect();
            let mut i = 0;
            group.bench_with_input(BenchmarkId::from_parameter(n), &table, |b, table| {
                b.iter(|| {
                    i = (i + 1) % hosts.len();
                    let entry = table.host(black_box(&hosts[i])).expect("routed");
                    black_box(entry.route(black_box(kind.path)).expect("matched"));
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, lookup);
criterion_main!(benches);
