//! The OS's errors in words for the user who gave Wharf a URL, a path or an archive: the
//! kind of failure ("connection refused", "no such file or directory") without the bare
//! `(os error N)` code, which says nothing to them and varies between systems.

use std::io;

/// What went wrong, in lowercase words and no error code: `io::Error`'s own description (the
/// C library's `strerror` text for an OS error) with its ` (os error N)` suffix dropped.
pub fn words(e: &io::Error) -> String {
    let text = e.to_string();
    let text = text.rfind(" (os error ").map_or(text.as_str(), |at| &text[..at]);
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => format!("{:?}", e.kind()).to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_words_without_their_code() {
        let check = |e: io::Error, want: &str| assert_eq!(words(&e), want);
        check(io::Error::from_raw_os_error(111), "connection refused");
        check(io::Error::from_raw_os_error(2), "no such file or directory");
        check(io::Error::from_raw_os_error(13), "permission denied");
        check(io::Error::from_raw_os_error(28), "no space left on device");
        check(io::Error::other("Already words"), "already words");
        check(io::Error::from(io::ErrorKind::TimedOut), "timed out");
    }
}
