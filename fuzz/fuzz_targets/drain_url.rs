//! Drain URLs: parsing never panics; an accepted URL re-parses to itself, and its redacted form
//! (what `Display` and `Debug` show) is the same URL with the password replaced by `****`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_domain::DrainUrl;

fuzz_target!(|data: &str| {
    let Ok(url) = DrainUrl::try_new(data) else { return };
    assert_eq!(DrainUrl::try_new(url.expose()).as_ref(), Ok(&url));
    let redacted = url.redacted();
    assert_eq!(url.to_string(), redacted);
    assert!(format!("{url:?}").contains(&redacted));
    if let Some((user, Some(_))) = url.basic_auth() {
        let shown = DrainUrl::try_new(&redacted).expect("the redacted form parses");
        assert_eq!(shown.basic_auth(), Some((user, Some("****"))), "{redacted}");
        assert_eq!((shown.host(), shown.port(), shown.path_and_query()), (url.host(), url.port(), url.path_and_query()));
    }
});
