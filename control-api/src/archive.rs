//! Archives users give Wharf (slugs, build sources): unpacked safely, packed, and checksummed.
//!
//! An archive is untrusted input that Wharf writes to its own disk, so [`unpack`] refuses, with
//! a message naming the entry, everything that could write outside the target directory or
//! make something other than files, directories and links inside it:
//!
//! - absolute paths, and paths with a `..` component (tar's `/etc/passwd`, `../x`; zip's
//!   `enclosed_name` rule);
//! - symbolic links whose target is absolute, climbs out of the tree (judged from where the
//!   link lies), or has a `..` after a name (which the kernel resolves from wherever that name,
//!   if a link, points, so chained links could climb out unseen), hard links whose target is not an earlier entry inside the tree, and any
//!   entry that would be written through a link (`a -> .` then `a/b -> ../x` would otherwise
//!   escape);
//! - devices, FIFOs and every other special entry (tar's character and block devices, FIFOs,
//!   contiguous and sparse files); zip archives may hold no links at all;
//! - more than [`Limits::max_bytes`] of content or [`Limits::max_entries`] entries (counted as
//!   read, so a zip entry that lies about its size is cut off too);
//! - anything that is neither a gzip'd tar nor a zip, and a truncated or corrupt stream;
//! - a file or link named twice (the later one would run, not the one a reader sees first).
//!
//! macOS's own metadata is left out, as it is no part of the app: the `__MACOSX/` directory
//! the Finder's "Compress" adds to a zip, and AppleDouble files (`._NAME` whose content starts
//! with AppleDouble's magic number `00 05 16 07`, RFC 1740) that macOS's `tar` and zip add for
//! extended attributes. A `._NAME` file without that magic is an ordinary file and is kept.
//! Without this, a macOS zip of `repo/` would hold two top-level directories and no
//! `Procfile` at its root.
//!
//! Permissions keep only the owner/group/other read, write and execute bits (no setuid); files
//! are owned by Wharf. A refused archive may leave a partly written directory behind: callers
//! unpack into a fresh staging directory and remove it on error, so nothing changes.
//!
//! Why one file: tar and zip are held to the same rules (paths, links, special entries, caps,
//! names given twice) by the same checks, which must not drift apart between two modules.

use std::fs;
use std::io::{self, Read, Seek};
use std::path::{Component, Path, PathBuf};

/// How much an archive may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of file content, all entries together.
    pub max_bytes: u64,
    /// Most entries (files, directories and links).
    pub max_entries: u64,
}

impl Default for Limits {
    /// 1 GiB and 100,000 entries: above any app Heroku would build (its slugs are capped at
    /// 500 MB compressed), below what fills a disk by accident.
    fn default() -> Self {
        Limits { max_bytes: 1 << 30, max_entries: 100_000 }
    }
}

/// What an archive held, once unpacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// Entries written.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// The two archive formats Wharf reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A tar stream compressed with gzip (RFC 1952): Heroku's slug and source format.
    TarGz,
    /// A zip archive (PKWARE's APPNOTE), stored or deflated entries.
    Zip,
}

/// Why an archive was refused; the message names the entry and the rule.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The archive breaks one of the rules above.
    #[error("{0}")]
    Refused(String),
    /// Writing the unpacked tree failed.
    #[error("cannot write the unpacked files: {}", crate::os_error::words(.0))]
    Io(#[from] io::Error),
}

fn refused(message: impl Into<String>) -> ArchiveError {
    ArchiveError::Refused(message.into())
}

/// The format of an archive, from its first bytes: gzip's magic `1f 8b`, or a zip's local
/// file header `PK\3\4` (or the end record `PK\5\6` of an empty zip).
pub fn detect(head: &[u8]) -> Option<Format> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Format::TarGz)
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Some(Format::Zip)
    } else {
        None
    }
}

/// `SHA256:` and the lowercase hex SHA-256 digest of a file's bytes: the form of Heroku's slug
/// and source `checksum`.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        context.update(&buf[..n]);
    }
    Ok(checksum_text(context.finish().as_ref()))
}

/// `SHA256:<hex>` of a digest.
pub fn checksum_text(digest: &[u8]) -> String {
    let mut out = String::with_capacity(7 + digest.len() * 2);
    out.push_str("SHA256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Checks a checksum as a user writes it: `SHA256:` (any case) and 64 hex digits. Returns it in
/// the form [`sha256_file`] writes, for comparison.
pub fn parse_checksum(text: &str) -> Result<String, String> {
    let bad = || format!("invalid checksum {text:?}: expected SHA256: and 64 hex digits");
    let (algorithm, hex) = text.split_once(':').ok_or_else(bad)?;
    if !algorithm.eq_ignore_ascii_case("sha256") || hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(format!("SHA256:{}", hex.to_ascii_lowercase()))
}

/// Unpacks the archive at `archive` (tar.gz or zip, told by its first bytes) into `into`, which
/// must exist, under the rules of this module.
///
/// # Errors
///
/// [`ArchiveError::Refused`] naming the entry and the rule it breaks; [`ArchiveError::Io`] when
/// the files cannot be written.
pub fn unpack(archive: &Path, into: &Path, limits: Limits) -> Result<Unpacked, ArchiveError> {
    let mut file = fs::File::open(archive)?;
    let mut head = [0; 4];
    let n = read_up_to(&mut file, &mut head)?;
    file.rewind()?;
    match detect(&head[..n]) {
        Some(Format::TarGz) => unpack_tar_gz(file, into, limits),
        Some(Format::Zip) => unpack_zip(file, into, limits),
        None => Err(refused("the archive is neither a gzip'd tar (.tar.gz, .tgz) nor a zip")),
    }
}

/// Decodes, in place, one gzip layer around an archive: what a server sends that compresses a
/// `.tgz` or `.zip` on the fly (`Content-Encoding: gzip` over the file's own bytes). Only when
/// what the layer holds starts as an archive ([`detect`]) is the file replaced by it, at most
/// `max_bytes` long; a file whose gzip is the archive's own (a `.tgz` stored with the label
/// `Content-Encoding: gzip`, as S3 objects often are) is left as it is. Returns whether it
/// decoded a layer.
///
/// # Errors
///
/// [`ArchiveError::Refused`] when the decoded archive is longer than `max_bytes` or the layer
/// is corrupt; [`ArchiveError::Io`] when the file cannot be read or written.
pub fn decode_gzip_layer(path: &Path, max_bytes: u64) -> Result<bool, ArchiveError> {
    let open = || fs::File::open(path).map(|f| flate2::read::GzDecoder::new(io::BufReader::new(f)));
    let mut head = [0; 4];
    // A body that is no gzip stream at all, or whose content is no archive, is the archive.
    let Ok(n) = read_up_to(&mut open()?, &mut head) else { return Ok(false) };
    if detect(&head[..n]).is_none() {
        return Ok(false);
    }
    let decoded = path.with_extension("decoded");
    let mut out = fs::File::create(&decoded)?;
    let copied = io::copy(&mut open()?.take(max_bytes.saturating_add(1)), &mut out);
    let outcome = match copied {
        Ok(n) if n > max_bytes => {
            Err(refused(format!("the source's gzip content coding decodes to more than {max_bytes} bytes")))
        }
        Ok(_) => fs::rename(&decoded, path).map_err(ArchiveError::Io),
        Err(e) => Err(refused(format!("the source's gzip content coding is corrupt or truncated: {e}"))),
    };
    if outcome.is_err() {
        let _ = fs::remove_file(&decoded);
    }
    outcome.map(|()| true)
}

/// AppleDouble's magic number, the first four bytes of every AppleDouble file (RFC 1740
/// appendix B).
const APPLE_DOUBLE_MAGIC: [u8; 4] = [0x00, 0x05, 0x16, 0x07];

/// Whether `rel` is under a top-level `__MACOSX/` directory (the Finder's zip metadata).
fn in_macos_metadata_dir(rel: &Path) -> bool {
    rel.components().next().is_some_and(|c| c.as_os_str() == "__MACOSX")
}

/// Whether a file at `rel` is named as an AppleDouble file is (`._NAME`), so that its first
/// bytes decide whether it is one.
fn named_like_apple_double(rel: &Path) -> bool {
    rel.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("._") && n.len() > 2)
}

/// For a file named like an AppleDouble file, its first (up to four) bytes, read off `entry`:
/// `None` when it is an AppleDouble file and is to be left out. Other files read nothing.
fn head_unless_apple_double(rel: &Path, entry: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    if !named_like_apple_double(rel) {
        return Ok(Some(Vec::new()));
    }
    let mut head = [0; 4];
    let n = read_up_to(entry, &mut head)?;
    Ok((head[..n] != APPLE_DOUBLE_MAGIC).then(|| head[..n].to_vec()))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A relative path of plain components, or why not: no root, no prefix, no `..`; `.` dropped.
fn clean_relative(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("{}: a path with `..` is refused", path.display())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("{}: an absolute path is refused", path.display()));
            }
        }
    }
    Ok(out)
}

/// Refuses an entry that would be written through a link: a link's target was judged from
/// where the link lies, which is only where it really lies if no directory above it is a link.
fn check_no_link_above(root: &Path, rel: &Path) -> Result<(), ArchiveError> {
    let mut at = root.to_path_buf();
    let mut parts = rel.components().peekable();
    while let Some(c) = parts.next() {
        if parts.peek().is_none() {
            break;
        }
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refused(format!(
                    "{}: an entry under the link {} is refused",
                    rel.display(),
                    at.strip_prefix(root).unwrap_or(&at).display()
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a symbolic link at `rel` pointing at `target`: relative, inside the tree when
/// resolved from the link's own directory, and with its `..` components only at its start.
///
/// Counting components is only what the kernel does if no name the target walks down through
/// is itself a link: for `s/up/../../x` the kernel resolves the `..` after `s/up` from wherever
/// the link `s/up` points (`s/up -> ..` climbs one level), so a chain of such links leaves the
/// tree while every count stays inside (a fresh user's build read `/proc/self/environ` that
/// way). With `..` only leading, the target climbs real directories (no entry lies under a
/// link) and then only descends, through names that are files, directories, or links checked
/// the same way: every link resolves inside the tree, whatever order the archive lists them in.
fn check_symlink_target(rel: &Path, target: &Path) -> Result<(), ArchiveError> {
    if target.has_root() {
        return Err(refused(format!("{}: a link to the absolute path {} is refused", rel.display(), target.display())));
    }
    let mut depth: i64 = rel.components().count() as i64 - 1;
    let mut descended = false;
    for c in target.components() {
        match c {
            Component::ParentDir if descended => {
                return Err(refused(format!(
                    "{}: a link to {} is refused: `..` may only lead a link's target",
                    rel.display(),
                    target.display()
                )));
            }
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => {
                depth += 1;
                descended = true;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(refused(format!(
                "{}: a link to {}, outside the archive's tree, is refused",
                rel.display(),
                target.display()
            )));
        }
    }
    Ok(())
}

/// Counts an entry against the limits.
fn count_entry(done: &mut Unpacked, limits: Limits) -> Result<(), ArchiveError> {
    done.entries += 1;
    if done.entries > limits.max_entries {
        return Err(refused(format!("the archive has more than {} entries", limits.max_entries)));
    }
    Ok(())
}

fn too_large(limits: Limits) -> ArchiveError {
    refused(format!("the archive unpacks to more than {} bytes", limits.max_bytes))
}

/// Makes a stream error (gzip, tar) a refusal: the archive is corrupt or truncated. The
/// decoder's own words are left out: they may quote the archive's bytes or, for an entry tar
/// unpacked, the path on this machine it was written to.
fn corrupt(e: io::Error) -> ArchiveError {
    let why = match root_cause(&e).0 {
        io::ErrorKind::UnexpectedEof => "it ends before its last entry",
        _ => "a header or the compressed stream is not valid",
    };
    refused(format!("the archive is corrupt or truncated: {why}"))
}

/// The innermost I/O error's kind and OS error number: tar wraps an entry's write error in its
/// own, whose message names the server path it was writing.
fn root_cause(e: &io::Error) -> (io::ErrorKind, Option<i32>) {
    let (mut kind, mut os) = (e.kind(), e.raw_os_error());
    let mut next = e.get_ref().and_then(|inner| inner.source());
    while let Some(cause) = next {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            (kind, os) = (io.kind(), io.raw_os_error());
        }
        next = cause.source();
    }
    (kind, os)
}

/// The longest entry path shown in a message, in characters: the message quotes what the
/// archive gave, and a long name would drown the reason.
const SHOWN_PATH: usize = 200;

/// An entry's path as messages show it: the archive's own name, cut at [`SHOWN_PATH`].
fn shown(rel: &Path) -> String {
    let text = rel.to_string_lossy();
    match text.char_indices().nth(SHOWN_PATH) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.into_owned(),
    }
}

/// The refusal of a second file or link of the name `rel` (see the module comment).
fn named_twice(rel: &Path) -> ArchiveError {
    refused(format!(
        "{}: the archive names it twice; each file is named once, so what is read is what runs",
        shown(rel)
    ))
}

/// Why entry `rel` could not be written, as a refusal naming the entry and the rule it broke
/// when the archive is at fault (a name clash, a name too long), or as an [`ArchiveError::Io`]
/// when the server is (a full disk). Never the server's path or the OS's bare words: the
/// message reaches the user, and the data directory's layout is not theirs to see.
fn write_failed(rel: &Path, e: io::Error) -> ArchiveError {
    let (kind, os) = root_cause(&e);
    let entry = shown(rel);
    match (kind, os) {
        // EEXIST, ENOTDIR, EISDIR, ENOTEMPTY: a file where a directory is, or the reverse.
        (_, Some(17 | 20 | 21 | 39)) | (io::ErrorKind::AlreadyExists, _) => refused(format!(
            "{entry}: clashes with an earlier entry of another kind (a file and a directory of one name, or a file \
             under a file)"
        )),
        // ENAMETOOLONG.
        (_, Some(36)) => {
            refused(format!("{entry}: a name is longer than 255 bytes, or the path longer than 4096 bytes"))
        }
        (_, Some(code)) => ArchiveError::Io(io::Error::from_raw_os_error(code)),
        (kind, None) => ArchiveError::Io(io::Error::from(kind)),
    }
}

fn unpack_tar_gz(file: fs::File, into: &Path, limits: Limits) -> Result<Unpacked, ArchiveError> {
    let gz = flate2::read::GzDecoder::new(io::BufReader::new(file));
    let mut tar = tar::Archive::new(gz);
    tar.set_preserve_permissions(false);
    tar.set_unpack_xattrs(false);
    tar.set_overwrite(true);
    let (mut done, mut names) = (Unpacked::default(), std::collections::HashSet::new());
    let mut skipped: u64 = 0;
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let kind = entry.header().entry_type();
        if kind == tar::EntryType::XGlobalHeader {
            continue;
        }
        let raw = entry.path().map_err(corrupt)?.into_owned();
        let rel = clean_relative(&raw).map_err(refused)?;
        if rel.as_os_str().is_empty() {
            // The archive's own root (`./`): it is `into`.
            continue;
        }
        // macOS's metadata is left out (see the module comment); what is read of it still
        // counts against the cap, so that it cannot be made to decompress without end.
        let head = match kind {
            _ if in_macos_metadata_dir(&rel) => None,
            tar::EntryType::Regular => head_unless_apple_double(&rel, &mut entry).map_err(corrupt)?,
            _ => Some(Vec::new()),
        };
        let Some(head) = head else {
            skipped = skipped.saturating_add(entry.header().size().map_err(corrupt)?);
            if skipped > limits.max_bytes {
                return Err(too_large(limits));
            }
            continue;
        };
        count_entry(&mut done, limits)?;
        if kind != tar::EntryType::Directory && !names.insert(rel.clone()) {
            return Err(named_twice(&rel));
        }
        check_no_link_above(into, &rel)?;
        let mut hard_link_source = None;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Directory => {}
            tar::EntryType::Symlink => {
                let target = entry.link_name().map_err(corrupt)?.unwrap_or_default().into_owned();
                check_symlink_target(&rel, &target)?;
            }
            tar::EntryType::Link => {
                let target = entry.link_name().map_err(corrupt)?.unwrap_or_default().into_owned();
                let target =
                    clean_relative(&target).map_err(|e| refused(format!("{}: a hard link to {e}", rel.display())))?;
                check_no_link_above(into, &target)?;
                let ok = fs::symlink_metadata(into.join(&target)).is_ok_and(|m| m.is_file());
                if !ok {
                    return Err(refused(format!(
                        "{}: a hard link must name an earlier file of the archive, not {}",
                        rel.display(),
                        target.display()
                    )));
                }
                hard_link_source = Some(target);
            }
            other => {
                return Err(refused(format!(
                    "{}: {} entries are refused; only files, directories and links",
                    rel.display(),
                    entry_kind(other)
                )));
            }
        }
        let size = entry.header().size().map_err(corrupt)?;
        if kind == tar::EntryType::Regular {
            done.bytes = done.bytes.saturating_add(size);
            if done.bytes > limits.max_bytes {
                return Err(too_large(limits));
            }
        }
        let failed = |e| write_failed(&rel, e);
        if let Some(parent) = rel.parent() {
            fs::create_dir_all(into.join(parent)).map_err(failed)?;
        }
        let target = into.join(&rel);
        // An earlier entry of the same name that is a link is replaced, never written through.
        if fs::symlink_metadata(&target).is_ok_and(|m| m.file_type().is_symlink()) {
            fs::remove_file(&target).map_err(failed)?;
        }
        if let Some(source) = hard_link_source {
            // tar's own `unpack` would take a hard link's target from the working directory.
            if fs::symlink_metadata(&target).is_ok() {
                fs::remove_file(&target).map_err(failed)?;
            }
            fs::hard_link(into.join(source), &target).map_err(failed)?;
            continue;
        }
        if head.is_empty() {
            entry.unpack(&target).map_err(|e| match root_cause(&e).0 {
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => corrupt(e),
                _ => write_failed(&rel, e),
            })?;
        } else {
            // A `._NAME` file that is no AppleDouble file: its first bytes were read to tell.
            let mut out = fs::File::create(&target).map_err(failed)?;
            io::Write::write_all(&mut out, &head).map_err(failed)?;
            io::copy(&mut entry, &mut out).map_err(corrupt)?;
        }
        if kind == tar::EntryType::Regular {
            // Only the rwx bits: no setuid, setgid or sticky bit from an archive.
            let mode = entry.header().mode().unwrap_or(0o644) & 0o777;
            set_mode(&target, mode | 0o600).map_err(failed)?;
        }
    }
    Ok(done)
}

fn entry_kind(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "FIFO",
        tar::EntryType::Continuous => "contiguous file",
        tar::EntryType::GNUSparse => "sparse file",
        _ => "special",
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

fn unpack_zip(file: fs::File, into: &Path, limits: Limits) -> Result<Unpacked, ArchiveError> {
    let bad = |e: zip::result::ZipError| refused(format!("the zip archive is corrupt: {e}"));
    let mut zip = zip::ZipArchive::new(io::BufReader::new(file)).map_err(bad)?;
    // Its central directory may list a name twice, which the reader keeps once (the later).
    if zip.has_duplicate_names() {
        return Err(refused(
            "the zip archive names a file twice; each file is named once, so what is read is what runs",
        ));
    }
    let (mut done, mut names) = (Unpacked::default(), std::collections::HashSet::new());
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(bad)?;
        let raw = PathBuf::from(entry.name().map_err(bad)?.into_owned());
        let rel = clean_relative(&raw).map_err(refused)?;
        // zip's own rule too: it refuses NUL bytes and drive prefixes that `Path` would miss.
        if entry.enclosed_name().is_none() {
            return Err(refused(format!("{}: a path outside the archive's tree is refused", raw.display())));
        }
        if rel.as_os_str().is_empty() || in_macos_metadata_dir(&rel) {
            // The archive's root, or the Finder's metadata (see the module comment).
            continue;
        }
        let head = if entry.is_dir() || entry.is_symlink() {
            Vec::new()
        } else {
            match head_unless_apple_double(&rel, &mut entry)
                .map_err(|e| refused(format!("{}: the zip entry is corrupt: {e}", rel.display())))?
            {
                Some(head) => head,
                None => continue,
            }
        };
        count_entry(&mut done, limits)?;
        if !entry.is_dir() && !names.insert(rel.clone()) {
            return Err(named_twice(&rel));
        }
        check_no_link_above(into, &rel)?;
        let mode = entry.unix_mode();
        let file_type = mode.map(|m| m & 0o170_000);
        if entry.is_symlink() {
            return Err(refused(format!("{}: links in zip archives are refused", rel.display())));
        }
        let target = into.join(&rel);
        let failed = |e| write_failed(&rel, e);
        if entry.is_dir() {
            fs::create_dir_all(&target).map_err(failed)?;
            continue;
        }
        if file_type.is_some_and(|t| t != 0 && t != 0o100_000) {
            return Err(refused(format!(
                "{}: special entries (devices, FIFOs, sockets) are refused; only files and directories",
                rel.display()
            )));
        }
        if let Some(parent) = rel.parent() {
            fs::create_dir_all(into.join(parent)).map_err(failed)?;
        }
        let mut out = fs::File::create(&target).map_err(failed)?;
        // Read one byte past what may still be written: a size field can lie.
        let room = limits.max_bytes.saturating_sub(done.bytes);
        let copied = io::copy(&mut (&head[..]).chain(&mut entry).take(room.saturating_add(1)), &mut out)
            .map_err(|e| refused(format!("{}: the zip entry is corrupt: {e}", rel.display())))?;
        done.bytes += copied;
        if done.bytes > limits.max_bytes {
            return Err(too_large(limits));
        }
        set_mode(&target, mode.map_or(0o644, |m| m & 0o777) | 0o600).map_err(failed)?;
    }
    Ok(done)
}

/// Packs the tree under `dir` into a tar.gz at `out`, every path under `prefix` (Heroku's slug
/// layout puts the app under `./app`). Links are stored as links, never followed.
///
/// # Errors
///
/// When the tree cannot be read or the archive written.
pub fn pack_tar_gz(dir: &Path, prefix: &str, out: &Path) -> io::Result<u64> {
    let file = fs::File::create(out)?;
    let gz = flate2::write::GzEncoder::new(io::BufWriter::new(file), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.append_dir_all(prefix, dir)?;
    let gz = tar.into_inner()?;
    let writer = gz.finish()?;
    writer.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(fs::metadata(out)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_sha256_and_64_hex_digits() {
        let check = |text: &str, want: Result<&str, ()>| {
            assert_eq!(parse_checksum(text).map_err(|_| ()), want.map(str::to_owned), "{text}");
        };
        let hex = "ab".repeat(32);
        check(&format!("SHA256:{hex}"), Ok(&format!("SHA256:{hex}")));
        check(&format!("sha256:{}", hex.to_uppercase()), Ok(&format!("SHA256:{hex}")));
        check(&format!("MD5:{hex}"), Err(()));
        check(&format!("SHA256:{}", &hex[1..]), Err(()));
        check("SHA256:zz", Err(()));
        check(&hex, Err(()));
    }

    #[test]
    fn paths_must_be_relative_and_stay_in_the_tree() {
        let check = |path: &str, want: Result<&str, &str>| {
            let got = clean_relative(Path::new(path));
            match want {
                Ok(p) => assert_eq!(got, Ok(PathBuf::from(p)), "{path}"),
                Err(piece) => assert!(got.as_ref().is_err_and(|e| e.contains(piece)), "{path}: {got:?}"),
            }
        };
        check("app/Procfile", Ok("app/Procfile"));
        check("./app/./x", Ok("app/x"));
        check("../x", Err("`..`"));
        check("app/../../x", Err("`..`"));
        check("/etc/passwd", Err("absolute"));
    }

    #[test]
    fn links_must_point_inside_the_tree_from_where_they_lie() {
        let check = |at: &str, target: &str, ok: bool| {
            assert_eq!(check_symlink_target(Path::new(at), Path::new(target)).is_ok(), ok, "{at} -> {target}");
        };
        check("app/l", "x", true);
        check("app/l", "../app/x", true);
        check("app/l", "..", true);
        check("app/l", "../..", false);
        check("l", "../x", false);
        check("app/l", "/etc", false);
        check("app/a/b/l", "../../../x", true);
        check("app/a/b/l", "../../../../x", false);
        // `..` after a name: the kernel resolves it from wherever that name points, so a chain
        // of links (`s/up -> ..`) climbs out while every count stays inside.
        check("Procfile", "s/up/s/up/../../../../proc/self/environ", false);
        check("app/l", "x/..", false);
        check("app/l", "../x/../y", false);
        check("app/l", "./x/y", true);
        check("app/a/l", "../../app/x", true);
    }

    /// An archive's entries: (path, content), a path ending in `/` being a directory.
    type Entries<'a> = &'a [(&'a str, &'a [u8])];

    fn tar_gz(entries: Entries, out: &Path) {
        let gz = flate2::write::GzEncoder::new(fs::File::create(out).unwrap(), flate2::Compression::fast());
        let mut t = tar::Builder::new(gz);
        for (path, content) in entries {
            let mut h = tar::Header::new_gnu();
            if let Some(dir) = path.strip_suffix('/') {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                h.set_mode(0o755);
                t.append_data(&mut h, dir, io::empty()).unwrap();
            } else {
                h.set_size(content.len() as u64);
                h.set_mode(0o644);
                t.append_data(&mut h, path, *content).unwrap();
            }
        }
        t.into_inner().unwrap().finish().unwrap();
    }

    fn zip(entries: Entries, out: &Path) {
        let mut z = zip::ZipWriter::new(fs::File::create(out).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (path, content) in entries {
            if path.ends_with('/') {
                z.add_directory(*path, options).unwrap();
            } else {
                z.start_file(*path, options).unwrap();
                io::Write::write_all(&mut z, content).unwrap();
            }
        }
        z.finish().unwrap();
    }

    /// Every file and directory under `dir`, relative, sorted (directories end in `/`).
    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).unwrap().flatten() {
                let rel = e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                if e.file_type().unwrap().is_dir() {
                    out.push(format!("{rel}/"));
                    todo.push(e.path());
                } else {
                    out.push(rel);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_file_named_twice_is_refused_and_a_directory_listed_twice_is_not() {
        let tmp = std::env::temp_dir().join(format!("wharf-archive-twice-{}", wharf_domain::new_id()));
        fs::create_dir_all(&tmp).unwrap();
        // (entries, the refusal's start, if refused)
        let rows: [(Entries, Option<&str>); 4] = [
            (&[("Procfile", b"web: good"), ("Procfile", b"web: evil")], Some("Procfile: the archive names it twice")),
            (&[("a/", b""), ("a/x", b"1"), ("b", b"2"), ("a/x", b"3")], Some("a/x: the archive names it twice")),
            (&[("./Procfile", b"web: good"), ("Procfile", b"web: evil")], Some("Procfile: the archive names it twice")),
            (&[("a/", b""), ("a/", b""), ("a/x", b"1")], None),
        ];
        for (i, (entries, refusal)) in rows.into_iter().enumerate() {
            let out = tmp.join(format!("{i}.tgz"));
            tar_gz(entries, &out);
            let into = tmp.join(format!("into{i}"));
            fs::create_dir_all(&into).unwrap();
            match (unpack(&out, &into, Limits::default()), refusal) {
                (Err(ArchiveError::Refused(m)), Some(start)) => assert!(m.starts_with(start), "row {i}: {m}"),
                (Ok(_), None) => {}
                (got, want) => panic!("row {i}: {got:?}, want {want:?}"),
            }
        }
        fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn macos_metadata_is_left_out_of_zips_and_tars_and_nothing_else() {
        const DOUBLE: &[u8] = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ";
        // (what the archive holds, what is unpacked), each as a zip and as a tar.gz.
        let rows: &[(Entries, &[&str])] = &[
            // The Finder's "Compress" of `repo/`: `__MACOSX/` beside it, AppleDouble files in both.
            (
                &[
                    ("repo/", b""),
                    ("repo/Procfile", b"web: x"),
                    ("repo/._Procfile", DOUBLE),
                    ("__MACOSX/", b""),
                    ("__MACOSX/repo/", b""),
                    ("__MACOSX/repo/._Procfile", DOUBLE),
                ],
                &["repo/", "repo/Procfile"],
            ),
            // A `._NAME` file that is no AppleDouble file is the app's, whole, however short.
            (
                &[("Procfile", b"web: x"), ("._env", b"KEY=value\n"), ("._a", b"ab"), ("._", b"\x00\x05\x16\x07")],
                &["._", "._a", "._env", "Procfile"],
            ),
            // `__MACOSX` below the top is an ordinary name.
            (&[("app/__MACOSX/x", b"1")], &["app/", "app/__MACOSX/", "app/__MACOSX/x"]),
        ];
        let dir = std::env::temp_dir().join(format!("wharf-archive-macos-{}", wharf_domain::new_id()));
        for (i, (entries, want)) in rows.iter().enumerate() {
            for (kind, make) in [("zip", zip as fn(Entries, &Path)), ("tgz", tar_gz)] {
                let (file, into) = (dir.join(format!("{i}.{kind}")), dir.join(format!("{i}-{kind}")));
                fs::create_dir_all(&into).unwrap();
                make(entries, &file);
                unpack(&file, &into, Limits::default()).unwrap_or_else(|e| panic!("row {i} {kind}: {e}"));
                assert_eq!(tree(&into), *want, "row {i} {kind}");
            }
        }
        // What an ordinary `._` file holds is kept, bytes and all.
        assert_eq!(fs::read(dir.join("1-tgz/._env")).unwrap(), b"KEY=value\n");
        assert_eq!(fs::read(dir.join("1-zip/._a")).unwrap(), b"ab");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn one_gzip_layer_around_an_archive_is_decoded_and_an_archives_own_gzip_is_not() {
        let dir = std::env::temp_dir().join(format!("wharf-archive-layer-{}", wharf_domain::new_id()));
        fs::create_dir_all(&dir).unwrap();
        let gzip = |b: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            io::Write::write_all(&mut e, b).unwrap();
            e.finish().unwrap()
        };
        let (tgz, zipped) = (dir.join("a.tgz"), dir.join("a.zip"));
        tar_gz(&[("Procfile", b"web: x")], &tgz);
        zip(&[("Procfile", b"web: x")], &zipped);
        let (tgz, zipped) = (fs::read(tgz).unwrap(), fs::read(zipped).unwrap());
        // (the body as sent, the cap, decoded?, the file after, or the refusal's words)
        /// Decoded?, and the file after; or the refusal's words.
        type Want = Result<(bool, Vec<u8>), &'static str>;
        let rows: Vec<(Vec<u8>, u64, Want)> = vec![
            (gzip(&tgz), 1 << 20, Ok((true, tgz.clone()))),
            (gzip(&zipped), 1 << 20, Ok((true, zipped.clone()))),
            // Labelled gzip, but the gzip is the .tgz's own: kept as sent.
            (tgz.clone(), 1 << 20, Ok((false, tgz.clone()))),
            (zipped.clone(), 1 << 20, Ok((false, zipped.clone()))),
            (gzip(b"plain text"), 1 << 20, Ok((false, gzip(b"plain text")))),
            (gzip(&tgz), tgz.len() as u64 - 1, Err("decodes to more than")),
            (
                {
                    let g = gzip(&tgz);
                    g[..g.len() - 10].to_vec()
                },
                1 << 20,
                Err("corrupt or truncated"),
            ),
        ];
        for (i, (body, max, want)) in rows.into_iter().enumerate() {
            let file = dir.join(format!("source-{i}"));
            fs::write(&file, &body).unwrap();
            match (decode_gzip_layer(&file, max), want) {
                (Ok(decoded), Ok((d, after))) => {
                    assert_eq!(decoded, d, "row {i}");
                    assert!(fs::read(&file).unwrap() == after, "row {i}: the file after");
                }
                (Err(e), Err(piece)) => {
                    assert!(e.to_string().contains(piece), "row {i}: {e}");
                    assert_eq!(fs::read(&file).unwrap(), body, "row {i}: a refusal leaves the file");
                }
                (got, want) => panic!("row {i}: {got:?}, expected {want:?}"),
            }
        }
        let left: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "decoded"))
            .collect();
        assert!(left.is_empty(), "no scratch file is left");
        fs::remove_dir_all(dir).unwrap();
    }
}
