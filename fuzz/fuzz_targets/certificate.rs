//! Uploaded certificates: any DER inside the PEM blocks of a chain and a key is refused or
//! accepted without panicking, and an accepted one survives the round trip through storage.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use wharf_domain::Certificate;

fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fuzz_target!(|input: (Vec<Vec<u8>>, Vec<u8>, i64)| {
    let (chain, key, now) = input;
    let chain: String = chain.iter().take(4).map(|der| pem("CERTIFICATE", der)).collect();
    let Ok(cert) = Certificate::parse(&chain, &pem("PRIVATE KEY", &key)) else { return };
    let _ = cert.check_time(now);
    assert!(!cert.names().is_empty());
    let json = serde_json::to_string(&cert).unwrap();
    assert_eq!(serde_json::from_str::<Certificate>(&json).unwrap(), cert);
});
