//! Configuration files: loading never panics, and an accepted configuration validates.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_config::Config;

fuzz_target!(|data: &str| {
    if let Ok(c) = Config::from_toml_and_env(data, "", []) {
        c.validate().expect("a loaded configuration is valid");
    }
});
