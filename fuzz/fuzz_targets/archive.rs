//! Archive unpacking: any bytes, unpacked under Wharf's rules into a fresh directory, never
//! panic and never put anything outside it: the directory beside it stays empty, and no link in
//! the tree resolves outside the tree. The first byte picks how the rest is given: as is (gzip,
//! zip or anything), or gzip-compressed here, so the fuzzer reaches tar's headers without having
//! to find a valid deflate stream first.
#![no_main]

use std::io::Write as _;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use wharf_control_api::archive::{Limits, unpack};

fuzz_target!(|data: &[u8]| {
    let Some((&how, rest)) = data.split_first() else { return };
    let bytes = if how & 1 == 1 {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(rest).unwrap();
        gz.finish().unwrap()
    } else {
        rest.to_vec()
    };
    let dir = std::env::temp_dir().join(format!("wharf-fuzz-archive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (tree, beside) = (dir.join("tree"), dir.join("beside"));
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::create_dir_all(&beside).unwrap();
    let archive = dir.join("archive");
    std::fs::write(&archive, &bytes).unwrap();
    let _ = unpack(&archive, &tree, Limits { max_bytes: 1 << 20, max_entries: 1000 });
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["archive", "beside", "tree"], "something was written beside the tree");
    assert_eq!(std::fs::read_dir(&beside).unwrap().count(), 0, "something was written beside the tree");
    let root = tree.canonicalize().unwrap();
    check_inside(&root, &tree);
    std::fs::remove_dir_all(&dir).unwrap();
});

/// Every entry under `at`, links included, resolves inside `root` (a dangling link is fine: it
/// reaches nothing).
fn check_inside(root: &Path, at: &Path) {
    for entry in std::fs::read_dir(at).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if let Ok(resolved) = path.canonicalize() {
            assert!(resolved.starts_with(root), "{} resolves to {}", path.display(), resolved.display());
        }
        if meta.is_dir() {
            check_inside(root, &path);
        } else {
            assert!(meta.is_file() || meta.file_type().is_symlink(), "{}: a special file", path.display());
        }
    }
}
