//! Route lookup cost and memory per route, for tables of 10, 1,000 and 100,000 routes.
//!
//! `cargo bench -p wharf-router --bench lookup`. Lookup should not grow with the number of
//! routes: it is one hash of the host and one per path segment.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use wharf_config::{AppSpec, DynoSpec, Snapshot};
use wharf_router::RoutingTable;

fn snapshot(n: usize) -> Snapshot {
    let apps = (0..n)
        .map(|i| AppSpec {
            id: uuid::Uuid::from_u128(i as u128),
            key: format!("app{i}-space{}", i % 97).parse().expect("valid key"),
            internal: false,
            web_dynos: vec![DynoSpec {
                name: "web.1".parse().expect("valid dyno"),
                host: "127.0.0.1".parse().expect("valid host"),
                port: 10_000 + (i % 50_000) as u16,
            }],
        })
        .collect();
    Snapshot { version: 1, apps, drains: vec![], ..Snapshot::default() }
}

/// Resident memory of this process, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn lookup(c: &mut Criterion) {
    const SIZES: [usize; 3] = [10, 1_000, 100_000];
    // Memory first, with every table alive at once: freed tables would otherwise be reused by
    // the next size and hide its growth.
    let mut alive = Vec::new();
    for n in SIZES {
        let snap = snapshot(n);
        let copies = (50_000 / n).max(1);
        let before = rss();
        alive.push((0..copies).map(|_| RoutingTable::compile(&snap, "apps.example.com", None)).collect::<Vec<_>>());
        eprintln!("{n} routes: {} bytes per route", rss().saturating_sub(before) / (n * copies));
    }
    drop(alive);

    let mut group = c.benchmark_group("route lookup");
    for n in SIZES {
        let table = RoutingTable::compile(&snapshot(n), "apps.example.com", None);
        let hosts: Vec<String> = (0..1024)
            .map(|i| format!("app{}-space{}.apps.example.com", (i * 7919) % n, ((i * 7919) % n) % 97))
            .collect();
        let mut i = 0;
        group.bench_with_input(BenchmarkId::from_parameter(n), &table, |b, table| {
            b.iter(|| {
                i = (i + 1) % hosts.len();
                let entry = table.host(black_box(&hosts[i])).expect("routed");
                black_box(entry.route(black_box("/api/v1/users/42")).expect("matched"));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
