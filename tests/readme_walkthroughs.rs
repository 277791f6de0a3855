//! The README's walkthroughs run as written: each shell block marked `<!-- walkthrough: NAME -->`
//! runs in bash against a real `wharf serve` (its ports and data directory put where the README
//! says `127.0.0.1:5000`, `8443`, `8000` and `wharf-data/`), and its output must be the text
//! block that follows it, line for line, numbers and ids aside (they differ from run to run).
//! Walkthroughs nobody ran had drifted from the code: the canary one promoted over an empty
//! staging stage (a 422 since FE27 #5) and the pipeline one promoted a release still pending
//! (AU22). Needs bash, curl, jq and python3, as the README does.

use std::path::Path;
use std::time::Duration;

use wharf_testkit::TempDir;
use wharf_testkit::wharf::Wharf;

const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

/// The shell block after `<!-- walkthrough: NAME -->` in the README, and the text block after it.
fn walkthrough(readme: &str, name: &str) -> (String, String) {
    let marker = format!("<!-- walkthrough: {name} -->");
    let at = readme.find(&marker).unwrap_or_else(|| panic!("README has no {marker}"));
    let rest = &readme[at..];
    let block = |from: &str, fence: &str| -> (String, usize) {
        let start = from.find(fence).unwrap_or_else(|| panic!("{name}: no {fence} block")) + fence.len();
        let len = from[start..].find("\n```").expect("the block ends");
        (from[start..start + len].trim_start_matches('\n').to_owned(), start + len + 4)
    };
    let (script, end) = block(rest, "```sh\n");
    let (output, _) = block(&rest[end..], "```text\n");
    (script, output)
}

/// A line with its numbers and ids (UUIDs, hex slugs) replaced and its spaces collapsed: what a
/// run of the walkthrough must print the same.
fn shape(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_hexdigit()
            && (c.is_ascii_digit() || chars.peek().is_some_and(|n| n.is_ascii_hexdigit() || *n == '-'))
        {
            // A run of hex digits and dashes that holds a digit is a number or an id.
            let mut run = String::from(c);
            while let Some(&n) = chars.peek().filter(|n| n.is_ascii_hexdigit() || **n == '-' || **n == '.') {
                run.push(n);
                chars.next();
            }
            if run.chars().any(|c| c.is_ascii_digit()) {
                out.push('#');
            } else {
                out.push_str(&run);
            }
        } else if c.is_whitespace() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn shapes_hide_numbers_and_ids_only() {
    for (line, want) in [
        ("    123 v1", "# v#"),
        ("v3 succeeded Promotion of webstg-default v2", "v# succeeded Promotion of webstg-default v#"),
        ("v2 succeeded Deploy slug c092a5d8-2992-4d6b-aea9-1050877c947f", "v# succeeded Deploy slug #"),
        ("in 6 s without an abort\",\"release\":3}", "in # s without an abort\",\"release\":#}"),
        ("shopdev-default development", "shopdev-default development"),
        ("feed", "feed"),
    ] {
        assert_eq!(shape(line), want, "{line:?}");
    }
}

async fn run(name: &str) {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let (script, expected) = walkthrough(&readme, name);
    let dir = TempDir::new("walkthrough");
    let data = dir.path().join("wharf-data");
    let wharf = Wharf::serve_with(WHARF, &[], &data, &[]).await;
    let token = std::fs::read_to_string(data.join("admin-token")).unwrap();
    let sources = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let script = script
        .replace("wharf-data/", &format!("{}/", data.display()))
        .replace(":8443", &format!(":{}", wharf.https.port()))
        .replace("8000", &sources.to_string());
    // The block's background jobs (the sources' host) end with it.
    let script = format!("{script}\nkill $(jobs -p) 2>/dev/null; true\n");
    let child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("WHARF", format!("http://{}", wharf.api.addr))
        .env("AUTH", format!("Authorization: Bearer {}", token.trim()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("bash runs");
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name}: the walkthrough did not end in 300 s"))
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    let got: Vec<String> = printed.lines().map(shape).collect();
    let want: Vec<String> = expected.lines().map(shape).collect();
    assert_eq!(
        got,
        want,
        "{name}: the walkthrough printed\n{printed}\nstderr:\n{}\nwharf's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        wharf.stderr().lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipelines_walkthrough_runs_as_written() {
    run("pipelines").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_release_walkthrough_runs_as_written() {
    run("canary").await;
}
