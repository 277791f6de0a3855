//! One outbound rule for every URL a user gives: a table of hosts (IP literals in every IPv6
//! spelling of a refused IPv4 address, numeric forms resolvers read as IPv4, names) checked
//! through each kind of URL the control plane takes: log drains, webhooks, build sources and
//! maintenance pages. Each row has one expected outcome for all four.

use wharf_domain::outbound::Policy;
use wharf_domain::{DrainUrl, HookUrl};

use super::tests::plane;
use super::*;
use crate::model::HookEvent;

/// What every kind of URL must do with a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Taken now (a name is checked on its addresses when it is dialled).
    Taken,
    /// Refused by the outbound policy at once (422).
    Refused,
    /// Not a host at all (422).
    NotAHost,
}

#[tokio::test]
async fn every_url_kind_judges_its_host_by_one_rule() {
    use Outcome::*;
    let p = plane().await;
    p.set_outbound(Policy { allow_loopback: false, allow_private: false });
    let data_dir = super::tests::with_deploy(&p, "outbound", 20);
    p.create_app("api".parse().unwrap(), "default").await.unwrap();
    let table: &[(&str, Outcome)] = &[
        ("127.0.0.1", Refused),
        ("[::1]", Refused),
        ("[::ffff:127.0.0.1]", Refused),
        ("[::ffff:7f00:1]", Refused),
        ("[::127.0.0.1]", Refused),
        ("[64:ff9b::7f00:1]", Refused),
        ("[64:ff9b::a9fe:a9fe]", Refused),
        ("[64:ff9b:1::a9fe:a9fe]", Refused),
        ("[2002:7f00:1::1]", Refused),
        ("[2002:a9fe:a9fe::1]", Refused),
        ("[2001:0:4136:e378:8000:63bf:80ff:fffe]", Refused),
        ("10.0.0.1", Refused),
        ("[::ffff:10.0.0.1]", Refused),
        ("[fd00::1]", Refused),
        ("169.254.169.254", Refused),
        ("[fe80::1]", Refused),
        ("0.0.0.0", Refused),
        ("[::]", Refused),
        ("224.0.0.1", Refused),
        ("0", NotAHost),
        ("127.1", NotAHost),
        ("2130706433", NotAHost),
        ("0177.0.0.1", NotAHost),
        ("0x7f000001", NotAHost),
        ("0x0", NotAHost),
        ("a.0x7f000001", NotAHost),
        ("8.8.8.8", Taken),
        ("[64:ff9b::808:808]", Taken),
        ("[2606:4700::1111]", Taken),
        ("logs.example.com", Taken),
        ("localhost", Taken),
    ];
    let outcome = |r: Result<(), String>| match r {
        Ok(()) => Taken,
        Err(e) if e.contains("outbound policy refuses") => Refused,
        Err(e) if e.contains("host") => NotAHost,
        Err(e) => panic!("an unexpected refusal: {e}"),
    };
    let mut wrong = Vec::new();
    for (i, (host, want)) in table.iter().enumerate() {
        let drain = match DrainUrl::try_new(&format!("syslog+tls://{host}:6514")) {
            Ok(url) => p.add_drain(Drains::App("api-default"), url).await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(format!("host: {e}")),
        };
        let hook = match HookUrl::try_new(&format!("https://{host}/hook{i}")) {
            Ok(url) => {
                let input = HookInput {
                    url: Some(url),
                    events: Some(vec![HookEvent::Release]),
                    secret: Some("s3cret".into()),
                    active: Some(true),
                };
                p.create_hook("api-default", input).await.map(|_| ()).map_err(|e| e.to_string())
            }
            Err(e) => Err(format!("host: {e}")),
        };
        let build = p.check_source_url(&format!("http://{host}:8000/app.tgz")).map_err(|e| e.to_string());
        let page = super::fetch::parse_url(&format!("https://{host}/down.html"), true, &p.outbound())
            .map(|_| ())
            .map_err(|e| e.to_string());
        for (kind, got) in [("drain", drain), ("hook", hook), ("build", build), ("maintenance page", page)] {
            let got = outcome(got);
            if got != *want {
                wrong.push(format!("{kind} to {host}: {got:?}, not {want:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "hosts judged wrongly:\n{}", wrong.join("\n"));
    let _ = std::fs::remove_dir_all(data_dir);
}
