//! Client request heads as the router's HTTP/1.1 server reads them: nothing panics, the outcome
//! does not depend on how the bytes arrive, and an accepted head's body length is one of the
//! unambiguous ones.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (&[u8], usize)| {
    wharf_router::fuzzing::check_request(data.0, data.1);
});
