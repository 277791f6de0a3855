//! Log event frames: decoding never panics, and a decoded event's fields rebuild exactly the
//! same bytes (the builder only cuts messages longer than `MAX_MESSAGE`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_bus::LogEvent;

fuzz_target!(|data: &[u8]| {
    let Ok(e) = LogEvent::decode(bytes::Bytes::copy_from_slice(data)) else { return };
    let rebuilt = LogEvent::builder(e.app(), e.source())
        .site(e.site().unwrap_or(""))
        .process(e.process())
        .stream(e.stream())
        .time_micros(e.time_micros())
        .message(e.message());
    if e.message().len() <= wharf_bus::event::MAX_MESSAGE {
        assert_eq!(rebuilt.encoded(), e.encoded(), "{e:?}");
    } else {
        assert_eq!(rebuilt.message(), &e.message()[..wharf_bus::event::MAX_MESSAGE]);
    }
});
