//! Configuration files: loading never panics, an accepted configuration validates, and a
//! database URL's redaction never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_config::Config;

fuzz_target!(|data: &str| {
    if let Ok(c) = Config::from_toml_and_env(data, "", []) {
        c.validate().expect("a loaded configuration is valid");
        // A database URL's password never shows in its redacted form.
        if let Some(url) = &c.control_api.database_url {
            let shown = url.redacted();
            assert!(!shown.contains(":secret-password@"), "{shown}");
        }
    }
});
