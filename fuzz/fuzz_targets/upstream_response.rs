//! Dyno responses as the router's dyno client reads them: a head is consumed only when
//! whole, nothing panics, and a chunked body decodes the same however its bytes arrive.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: (&[u8], usize)| {
    wharf_router::fuzzing::check_response(data.0, data.1);
});
