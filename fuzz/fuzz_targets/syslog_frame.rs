//! Every event Wharf can decode formats into a frame the strict RFC 5424 parser accepts, with
//! octet counting that deframes to exactly that message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wharf_bus::LogEvent;
use wharf_domain::SyslogFraming;
use wharf_testkit::rfc5424;

fuzz_target!(|data: &[u8]| {
    let Ok(e) = LogEvent::decode(bytes::Bytes::copy_from_slice(data)) else { return };
    let mut framed = Vec::new();
    wharf_logshuttle::syslog::write_framed(&mut framed, &e, SyslogFraming::OctetCounting);
    let frames = rfc5424::deframe_octet_counted(&mut framed).expect("a valid frame");
    assert_eq!(frames.len(), 1);
    assert!(framed.is_empty());
    let m = rfc5424::parse(&frames[0]).unwrap_or_else(|err| panic!("{err}: {:?}", String::from_utf8_lossy(&frames[0])));
    assert_eq!(m.msg, e.message());
    let mut lf = Vec::new();
    wharf_logshuttle::syslog::write_framed(&mut lf, &e, SyslogFraming::NonTransparent);
    assert_eq!(lf.iter().filter(|&&b| b == b'\n').count(), 1, "one line per message with LF framing");
});
