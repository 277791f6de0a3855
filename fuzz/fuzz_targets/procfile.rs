//! Procfiles: parsing any text never panics, and what it accepts is a valid set of process
//! types, each with a non-empty command on one line that keeps no surrounding blanks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_domain::DynoType;

fuzz_target!(|data: &str| {
    let Ok(types) = wharf_control_api::plane::parse_procfile(data) else { return };
    assert!(!types.is_empty(), "an accepted Procfile declares a type");
    for (name, command) in &types {
        assert!(DynoType::try_new(name).is_ok(), "{name:?}");
        assert!(!command.is_empty() && !command.contains('\n'), "{name}: {command:?}");
        assert_eq!(command.trim(), command, "{name}");
    }
});
