//! Tidy: the architecture invariants a program can check, checked on every test run.
//!
//! After rust-analyzer's `tidy.rs`: each test reads the source tree as text and fails with the
//! file and the rule it breaks. The rules are the ones ARCHITECTURE.md states; the crate
//! dependency table is read from ARCHITECTURE.md itself, so the document and the check cannot
//! drift apart. No test here starts a process or opens a socket.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The workspace's crates: their folder and package name. The binary is the root package.
const CRATES: &[(&str, &str)] = &[
    ("domain", "wharf-domain"),
    ("config", "wharf-config"),
    ("bus", "wharf-bus"),
    ("control-api", "wharf-control-api"),
    ("router", "wharf-router"),
    ("logshuttle", "wharf-logshuttle"),
    ("supervisor", "wharf-supervisor"),
    ("testkit", "wharf-testkit"),
    (".", "wharf"),
];

/// The only files allowed to contain `unsafe` code: two asking the kernel for what the standard
/// library and socket2 cannot, one asking librdkafka for what rust-rdkafka cannot
/// (ARCHITECTURE.md, "Cross-cutting properties").
const UNSAFE_ALLOWED: &[&str] = &["bus/src/kafka/fetch.rs", "logshuttle/src/acked.rs", "router/src/sockopt.rs"];

/// Source files longer than this (not counting their unit tests) must say in their opening
/// comment why they are one file, with the words "Why one file:".
const MAX_LINES: usize = 600;

/// Every tracked Rust file of the workspace (and the fuzz targets), as paths relative to the root.
/// `vendor/` is left out: it holds other projects' crates as they wrote them, with Wharf's
/// changes listed beside each (vendor/h2/WHARF.md), and keeps their rules, not these.
fn rust_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if !matches!(name.as_ref(), "target" | ".git" | "node_modules" | "corpus" | "artifacts" | "vendor") {
                    walk(&path, out);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    walk(&root(), &mut out);
    out.iter().map(|p| p.strip_prefix(root()).unwrap().to_owned()).filter(|p| !p.starts_with("fuzz/target")).collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The text of a file before its unit tests (`#[cfg(test)]`), where most invariants apply.
fn non_test_part(text: &str) -> &str {
    text.find("\n#[cfg(test)]").map_or(text, |at| &text[..at])
}

#[test]
fn every_source_file_opens_with_a_module_comment() {
    let missing: Vec<_> = rust_files().into_iter().filter(|p| !read(p).starts_with("//!")).collect();
    assert!(missing.is_empty(), "files that do not open with a `//!` line saying their job: {missing:#?}");
}

#[test]
fn unsafe_code_lives_only_in_the_named_modules() {
    let mut offenders = Vec::new();
    for path in rust_files() {
        let rel = path.to_string_lossy().into_owned();
        // This file names the rule's words.
        if UNSAFE_ALLOWED.contains(&rel.as_str()) || rel == "tests/tidy.rs" {
            continue;
        }
        for (n, line) in read(&path).lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("unsafe ") || code.contains("unsafe{") || code.contains("allow(unsafe_code)") {
                offenders.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(offenders.is_empty(), "unsafe code outside {UNSAFE_ALLOWED:?}:\n{}", offenders.join("\n"));
    // And the crate roots say so: `forbid` everywhere, `deny` where one module allows it.
    for (dir, _) in CRATES {
        let lib = if *dir == "." { PathBuf::from("src/main.rs") } else { Path::new(dir).join("src/lib.rs") };
        let text = read(&lib);
        let holds_allowed = UNSAFE_ALLOWED.iter().any(|f| f.starts_with(&format!("{dir}/")));
        let want = if holds_allowed { "#![deny(unsafe_code)]" } else { "#![forbid(unsafe_code)]" };
        assert!(text.contains(want), "{} must say {want}", lib.display());
    }
}

#[test]
fn anyhow_is_used_only_by_the_binary() {
    for (dir, name) in CRATES.iter().filter(|(d, _)| *d != ".") {
        let manifest = read(&Path::new(dir).join("Cargo.toml"));
        assert!(!manifest.contains("anyhow"), "{name} depends on anyhow; errors in libraries are thiserror enums");
    }
    for path in rust_files() {
        let rel = path.to_string_lossy();
        let in_binary = rel.starts_with("src/") || rel.starts_with("tests/") || rel.starts_with("benches/");
        if !in_binary {
            assert!(!read(&path).contains("anyhow"), "{rel} uses anyhow; only the binary does");
        }
    }
}

/// The `wharf-*` packages a manifest's `[dependencies]` section names.
fn wharf_dependencies(manifest: &str) -> BTreeSet<String> {
    let mut in_deps = false;
    let mut deps = BTreeSet::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps && line.starts_with("wharf-") {
            let name: String = line.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            deps.insert(name);
        }
    }
    deps
}

/// ARCHITECTURE.md's table of which crate may depend on which: the rows between the lines
/// `<!-- crate dependencies -->` and `<!-- end -->`, each `| crate | dep, dep |`.
fn documented_dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let doc = read(Path::new("ARCHITECTURE.md"));
    let start = doc.find("<!-- crate dependencies -->").expect("ARCHITECTURE.md has the crate dependency table");
    let table = &doc[start..];
    let table = &table[..table.find("<!-- end -->").expect("the table ends with <!-- end -->")];
    let mut out = BTreeMap::new();
    for row in table.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let name = cells[0].trim_matches('`').to_owned();
        let deps = cells[1]
            .split(',')
            .map(|d| d.trim().trim_matches('`').to_owned())
            .filter(|d| !d.is_empty() && d != "nothing")
            .collect();
        out.insert(name, deps);
    }
    out
}

#[test]
fn crates_depend_only_along_the_documented_arrows() {
    let documented = documented_dependencies();
    for (dir, name) in CRATES {
        let actual = wharf_dependencies(&read(&Path::new(dir).join("Cargo.toml")));
        let allowed = documented.get(*name).unwrap_or_else(|| panic!("ARCHITECTURE.md's table has no row for {name}"));
        assert_eq!(&actual, allowed, "{name}'s [dependencies] differ from ARCHITECTURE.md's table");
    }
    assert_eq!(documented.len(), CRATES.len(), "ARCHITECTURE.md's table names a crate the workspace lacks");
}

#[test]
fn long_files_say_why_they_are_one_file() {
    let mut long = Vec::new();
    for path in rust_files() {
        let rel = path.to_string_lossy().into_owned();
        // Integration tests and benchmarks are lists of cases; the rule is for the code they test.
        if rel.starts_with("tests/") || rel.contains("/tests/") || rel.contains("benches/") {
            continue;
        }
        let text = read(&path);
        let lines = non_test_part(&text).lines().count();
        let header: String = text.lines().take_while(|l| l.starts_with("//!")).collect::<Vec<_>>().join("\n");
        if lines > MAX_LINES && !header.contains("Why one file:") {
            long.push(format!("{rel}: {lines} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines without \"Why one file:\" in their opening comment:\n{}",
        long.join("\n")
    );
}

/// A crate's modules: module path (`["http1", "decode"]`) to file.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    for path in rust_files().into_iter().filter(|p| p.starts_with(src)) {
        let rel = path.strip_prefix(src).unwrap();
        let mut segments: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        let last = segments.pop().unwrap();
        match last.trim_end_matches(".rs") {
            "lib" | "main" if segments.is_empty() => {}
            "mod" => {}
            stem => segments.push(stem.to_owned()),
        }
        if segments.first().is_some_and(|s| s == "bin") {
            continue;
        }
        out.insert(segments, path);
    }
    out
}

/// Expands the paths a `use` tree names: `crate::{a::X, b::{c, d}}` gives `crate::a::X`,
/// `crate::b::c`, `crate::b::d`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let head = tree[..open].trim_end_matches("::").trim();
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        let joined = |p: &str| if head.is_empty() { p.to_owned() } else { format!("{p}::{head}") };
        let base = joined(prefix);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&base, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&base, &inner[start..], out);
    } else if !tree.is_empty() {
        out.push(format!("{prefix}::{}", tree.split(" as ").next().unwrap().trim()));
    }
}

/// The module paths a file refers to: `use crate::…`, `use super::…`, and `crate::a::b` in code.
fn references(file_module: &[String], text: &str, known: &BTreeSet<Vec<String>>) -> BTreeSet<Vec<String>> {
    let mut paths = Vec::new();
    // Comments (doc links among them) name modules without importing them.
    let code: String =
        non_test_part(text).lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let code = code.as_str();
    // `use` statements, possibly over several lines.
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        rest = &rest[at + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let stmt = &rest[..end];
        if stmt.starts_with("crate::") || stmt.starts_with("super::") || stmt.starts_with("crate::{") {
            let (root, tree) = stmt.split_once("::").unwrap();
            expand(root, tree, &mut paths);
        }
    }
    // Paths written in code.
    for (i, _) in code.match_indices("crate::") {
        let tail: String = code[i..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
        paths.push(tail);
    }
    // `super::` in module `a::b` (file `a/b.rs` or `a/b/mod.rs`) is `a`.
    let parent: Vec<String> = file_module[..file_module.len().saturating_sub(1)].to_vec();
    let mut out = BTreeSet::new();
    for p in paths {
        let mut segs: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
        let mut base: Vec<String> = match segs.first() {
            Some(&"crate") => Vec::new(),
            Some(&"super") => parent.clone(),
            _ => continue,
        };
        segs.remove(0);
        while segs.first() == Some(&"super") {
            base.pop();
            segs.remove(0);
        }
        // The longest prefix that is a module.
        let mut target = base.clone();
        let mut best = base.clone();
        for s in segs {
            target.push(s.to_owned());
            if known.contains(&target) {
                best = target.clone();
            } else {
                break;
            }
        }
        out.insert(best);
    }
    out
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let mut cycles = Vec::new();
    for (dir, name) in CRATES {
        let src = Path::new(dir).join("src");
        let src = if *dir == "." { PathBuf::from("src") } else { src };
        let mods = modules(&src);
        let known: BTreeSet<Vec<String>> = mods.keys().cloned().collect();
        // Edges between sibling modules: a file's reference to another module counts as its
        // ancestor-or-self at the level where the two paths part. A module and its own
        // descendants or ancestors may use each other (a parent re-exports its children).
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (module, file) in &mods {
            for target in references(module, &read(file), &known) {
                let common = module.iter().zip(&target).take_while(|(a, b)| a == b).count();
                if common == module.len() || common == target.len() {
                    continue;
                }
                edges.entry(module[..=common].to_vec()).or_default().insert(target[..=common].to_vec());
            }
        }
        for (a, targets) in &edges {
            for b in targets {
                if a < b && edges.get(b).is_some_and(|back| back.contains(a)) {
                    cycles.push(format!("{name}: {} <-> {}", a.join("::"), b.join("::")));
                }
            }
        }
        // Longer cycles: a module that reaches itself, named with the path that closes it.
        for start in edges.keys() {
            let mut came_from: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
            let mut queue: std::collections::VecDeque<Vec<String>> = edges[start].iter().cloned().collect();
            for first in &edges[start] {
                came_from.insert(first.clone(), start.clone());
            }
            while let Some(m) = queue.pop_front() {
                if &m == start {
                    let mut path = vec![start.join("::")];
                    let mut at = came_from[start].clone();
                    while &at != start {
                        path.push(at.join("::"));
                        at = came_from[&at].clone();
                    }
                    path.push(start.join("::"));
                    path.reverse();
                    let line = format!("{name}: {}", path.join(" -> "));
                    if path.len() > 3
                        && !cycles.iter().any(|c| c.starts_with(name) && path.iter().all(|m| c.contains(m.as_str())))
                    {
                        cycles.push(line);
                    }
                    break;
                }
                for next in edges.get(&m).into_iter().flatten() {
                    if !came_from.contains_key(next) || next == start {
                        came_from.entry(next.clone()).or_insert_with(|| m.clone());
                        if next == start {
                            came_from.insert(next.clone(), m.clone());
                        }
                        queue.push_back(next.clone());
                    }
                }
            }
        }
    }
    assert!(cycles.is_empty(), "module import cycles:\n{}", cycles.join("\n"));
}

/// The tidy check's own parser, on the shapes of `use` it must read.
#[test]
fn use_trees_expand_to_every_path() {
    let mut out = Vec::new();
    expand("crate", "{a::X, b::{c, d::Y as Z}, e}", &mut out);
    assert_eq!(out, ["crate::a::X", "crate::b::c", "crate::b::d::Y", "crate::e"]);
    let known: BTreeSet<Vec<String>> =
        [vec!["a".to_owned()], vec!["b".to_owned()], vec!["b".to_owned(), "c".to_owned()]].into_iter().collect();
    let module = vec!["b".to_owned(), "c".to_owned()];
    let refs = references(&module, "use super::Thing;\nuse crate::a::{X, Y};\nfn f() { crate::b::c::g() }", &known);
    assert_eq!(
        refs,
        [vec!["a".to_owned()], vec!["b".to_owned()], vec!["b".to_owned(), "c".to_owned()]].into_iter().collect()
    );
}

/// Where a word may appear in code (comments and unit tests aside): `(files it is searched in,
/// the word, the only files that may have it, the rule from ARCHITECTURE.md)`. A path ending in
/// `/` is a folder; an empty one is every file.
const CONFINED: &[(&str, &str, &[&str], &str)] = &[
    ("control-api/src/", "axum", &["control-api/src/http/", "control-api/src/lib.rs"], "only http/ knows axum"),
    (
        "control-api/src/",
        "serde_json",
        &["control-api/src/http/", "control-api/src/watch.rs", "control-api/src/store.rs"],
        "only http/ and watch.rs know the API's JSON (the store keeps records as JSON documents)",
    ),
    ("control-api/src/plane/", "Change::Delete", &[], "deletions are built by Model::cascade, in one place"),
    (
        "",
        "Command::new",
        &["supervisor/src/process.rs", "testkit/", "tests/", "benches/", "router/tests/", "router/benches/"],
        "only the supervisor's process.rs starts processes, so every other child is an orphan to reap",
    ),
    (
        "",
        "webpki_roots",
        &["domain/src/trust.rs", "tests/tidy.rs"],
        "every outbound TLS client trusts the system's store and its configured CAs, through wharf_domain::trust",
    ),
    ("supervisor/src/", "thread::sleep", &[], "the supervisor waits on tokio's clock, so tests can pause it"),
    ("supervisor/src/desired.rs", "async", &[], "desired state is computed, never acted on"),
    ("supervisor/src/desired.rs", "tokio", &[], "desired state is computed, never acted on"),
    ("logshuttle/src/", "TcpStream::connect", &["logshuttle/src/transport.rs"], "drains dial only allowed addresses"),
    ("logshuttle/src/", "TcpSocket", &["logshuttle/src/transport.rs"], "drains dial only allowed addresses"),
    ("logshuttle/src/", "UdpSocket::bind", &["logshuttle/src/transport.rs"], "drains dial only allowed addresses"),
    ("router/src/pool.rs", "Mutex", &[], "the dyno connection pool has no lock"),
    ("router/src/pool.rs", "RwLock", &[], "the dyno connection pool has no lock"),
    ("router/src/dyno_client.rs", "spawn", &[], "an exchange with a dyno has no task of its own"),
    ("router/src/dyno_client.rs", "mpsc", &[], "an exchange with a dyno has no channel of its own"),
    ("bus/src/lib.rs", "blocking_send", &[], "publishing never blocks a thread"),
    (
        "",
        "publish_batch_waiting",
        &["bus/src/lib.rs", "supervisor/src/output.rs", "tests/tidy.rs"],
        "only a dyno's output waits for room on the bus; access lines and posted events never do",
    ),
    ("supervisor/src/", "kill_process_group", &["supervisor/src/group.rs"], "only group.rs signals processes"),
];

#[test]
fn words_stay_where_the_architecture_confines_them() {
    let mut broken = Vec::new();
    for (scope, word, allowed, rule) in CONFINED {
        let files = rust_files().into_iter().filter(|p| {
            let rel = p.to_string_lossy();
            scope.is_empty() || if scope.ends_with('/') { rel.starts_with(scope) } else { rel == *scope }
        });
        let mut searched = 0;
        for path in files {
            searched += 1;
            let rel = path.to_string_lossy().into_owned();
            if allowed.iter().any(|a| if a.ends_with('/') { rel.starts_with(a) } else { rel == *a }) {
                continue;
            }
            let text = read(&path);
            for (n, line) in non_test_part(&text).lines().enumerate() {
                if !line.trim_start().starts_with("//") && line.contains(word) {
                    broken.push(format!("{rel}:{}: `{word}`: {rule}", n + 1));
                }
            }
        }
        assert!(searched > 0, "no file matches {scope}: the rule for `{word}` checks nothing");
    }
    assert!(broken.is_empty(), "architecture rules broken:\n{}", broken.join("\n"));
}

/// Which modules a module may use: `(crate source folder, module, the modules it may use)`.
const MODULE_USES: &[(&str, &str, &[&str])] = &[
    // Protocol code knows nothing of routing.
    ("router/src", "http1", &["fields", "forwarding", "error", "path", "date"]),
    // RFC 3986 path handling stands alone.
    ("router/src", "path", &[]),
    // Counters know nothing of what they count.
    ("router/src", "metrics", &["client"]),
    // Per-second request records know nothing of the router either (issue 21's metrics).
    ("router/src", "series", &[]),
    // Desired state, the service and /proc's reader stand alone; the probe reads only /proc.
    ("supervisor/src", "desired", &[]),
    ("supervisor/src", "service", &[]),
    ("supervisor/src", "procfs", &[]),
    ("supervisor/src", "probe", &["procfs"]),
    // Dyno metrics read /proc and nothing else of the supervisor: dynos hand them their group.
    ("supervisor/src", "metrics", &["procfs"]),
];

#[test]
fn modules_use_only_what_the_architecture_allows() {
    for (src, module, may_use) in MODULE_USES {
        let mods = modules(Path::new(src));
        let known: BTreeSet<Vec<String>> = mods.keys().cloned().collect();
        let mut used = BTreeSet::new();
        for (path, file) in mods.iter().filter(|(p, _)| p.first().is_some_and(|m| m == module)) {
            for target in references(path, &read(file), &known) {
                if target.first() != Some(&module.to_string()) && !target.is_empty() {
                    used.insert(target[0].clone());
                }
            }
        }
        let extra: Vec<_> = used.iter().filter(|m| !may_use.contains(&m.as_str())).collect();
        assert!(extra.is_empty(), "{src}: `{module}` uses {extra:?}; ARCHITECTURE.md allows only {may_use:?}");
    }
}
