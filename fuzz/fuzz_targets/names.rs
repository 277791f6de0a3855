//! Names: constructors never panic, and what they accept prints back as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_domain::{AppKey, AppName, DynoName, DynoType, Hostname, SpaceName};

fuzz_target!(|data: &str| {
    if let Ok(n) = AppName::try_new(data) {
        assert_eq!(n.as_str(), data);
    }
    if let Ok(n) = SpaceName::try_new(data) {
        assert_eq!(n.as_str(), data);
    }
    if let Ok(k) = AppKey::try_new(data) {
        assert_eq!(format!("{}-{}", k.app(), k.space()), data);
    }
    if let Ok(n) = DynoName::try_new(data) {
        assert!(DynoType::try_new(n.dyno_type()).is_ok());
    }
    if let Ok(h) = Hostname::try_new(data) {
        assert_eq!(Hostname::try_new(h.as_str()).as_ref(), Ok(&h));
    }
});
