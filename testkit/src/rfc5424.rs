//! A strict RFC 5424 parser and RFC 6587 octet-counting deframer, for checking what drains
//! receive. Strict means it rejects anything the RFC does not allow, including lengths over the
//! field limits and timestamps with more than six fractional digits.

/// A parsed RFC 5424 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogMessage {
    /// Facility times eight plus severity.
    pub pri: u8,
    /// `TIMESTAMP`, as written.
    pub timestamp: String,
    /// `HOSTNAME`, or `-`.
    pub hostname: String,
    /// `APP-NAME`, or `-`.
    pub app_name: String,
    /// `PROCID`, or `-`.
    pub procid: String,
    /// `MSGID`, or `-`.
    pub msgid: String,
    /// `STRUCTURED-DATA`, as written.
    pub structured_data: String,
    /// `MSG`.
    pub msg: Vec<u8>,
}

impl SyslogMessage {
    /// The message as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.msg).into_owned()
    }
}

fn header_field<'a>(rest: &mut &'a [u8], name: &str, max: usize) -> Result<&'a str, String> {
    let end = rest.iter().position(|&b| b == b' ').ok_or(format!("{name}: missing space after it"))?;
    let field = &rest[..end];
    if field.is_empty() || field.len() > max {
        return Err(format!("{name}: length {} not in 1..={max}", field.len()));
    }
    if !field.iter().all(|b| (33..=126).contains(b)) {
        return Err(format!("{name}: not printable US-ASCII"));
    }
    *rest = &rest[end + 1..];
    Ok(std::str::from_utf8(field).expect("ascii"))
}

fn check_timestamp(ts: &str) -> Result<(), String> {
    if ts == "-" {
        return Ok(());
    }
    let b = ts.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let ok_date = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !ok_date {
        return Err(format!("timestamp {ts:?} is not FULL-DATE T PARTIAL-TIME"));
    }
    let mut at = 19;
    if b[at] == b'.' {
        let n = b[at + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=6).contains(&n) {
            return Err(format!("timestamp {ts:?} has {n} fractional digits, RFC 5424 allows 1 to 6"));
        }
        at += 1 + n;
    }
    let zone = &ts[at..];
    let ok_zone = zone == "Z"
        || (zone.len() == 6
            && matches!(zone.as_bytes()[0], b'+' | b'-')
            && zone.as_bytes()[3] == b':'
            && zone[1..3].bytes().chain(zone[4..].bytes()).all(|c| c.is_ascii_digit()));
    if !ok_zone {
        return Err(format!("timestamp {ts:?} has an invalid time zone"));
    }
    Ok(())
}

/// Parses `[SD-ELEMENT]...` or `-`, returning what follows it.
fn structured_data<'a>(rest: &mut &'a [u8]) -> Result<&'a str, String> {
    let all = *rest;
    if rest.first() == Some(&b'-') {
        *rest = &rest[1..];
        return Ok("-");
    }
    let mut i = 0;
    if all.first() != Some(&b'[') {
        return Err("structured data: neither - nor [".into());
    }
    while all.get(i) == Some(&b'[') {
        i += 1;
        let name_len = all[i..].iter().take_while(|&&c| c != b' ' && c != b']').count();
        if name_len == 0 || name_len > 32 {
            return Err("structured data: bad SD-ID".into());
        }
        i += name_len;
        loop {
            match all.get(i) {
                Some(b']') => {
                    i += 1;
                    break;
                }
                Some(b' ') => {
                    i += 1;
                    let n = all[i..].iter().take_while(|&&c| c != b'=').count();
                    if n == 0 || n > 32 {
                        return Err("structured data: bad PARAM-NAME".into());
                    }
                    i += n;
                    if all.get(i..i + 2) != Some(b"=\"") {
                        return Err("structured data: PARAM-VALUE not quoted".into());
                    }
                    i += 2;
                    loop {
                        match all.get(i) {
                            None => return Err("structured data: unterminated PARAM-VALUE".into()),
                            Some(b'\\') => {
                                if !matches!(all.get(i + 1), Some(b'"' | b'\\' | b']')) {
                                    return Err("structured data: bad escape".into());
                                }
                                i += 2;
                            }
                            Some(b'"') => {
                                i += 1;
                                break;
                            }
                            Some(b']') => return Err("structured data: unescaped ]".into()),
                            Some(_) => i += 1,
                        }
                    }
                }
                _ => return Err("structured data: unterminated SD-ELEMENT".into()),
            }
        }
    }
    *rest = &all[i..];
    Ok(std::str::from_utf8(&all[..i]).map_err(|_| "structured data: not UTF-8")?)
}

/// Parses one RFC 5424 message (§6) strictly: PRI of 1 to 3 digits up to 191, version 1, a
/// §6.2.3 TIMESTAMP (RFC 3339, at most 6 fractional digits) or `-`, printable header fields
/// within their §6 lengths, well-formed structured data, and a space before any MSG. The error
/// says which field is wrong and why.
pub fn parse(msg: &[u8]) -> Result<SyslogMessage, String> {
    let mut rest = msg;
    if rest.first() != Some(&b'<') {
        return Err("PRI: missing <".into());
    }
    let close = rest.iter().position(|&b| b == b'>').ok_or("PRI: missing >")?;
    let pri_text = &rest[1..close];
    if pri_text.is_empty() || pri_text.len() > 3 || !pri_text.iter().all(u8::is_ascii_digit) {
        return Err("PRI: not 1 to 3 digits".into());
    }
    if pri_text.len() > 1 && pri_text[0] == b'0' {
        return Err("PRI: leading zero".into());
    }
    let pri: u16 = std::str::from_utf8(pri_text).expect("digits").parse().expect("digits");
    if pri > 191 {
        return Err(format!("PRI: {pri} is over 191"));
    }
    rest = &rest[close + 1..];
    if !rest.starts_with(b"1 ") {
        return Err("VERSION: not 1".into());
    }
    rest = &rest[2..];
    let timestamp = header_field(&mut rest, "TIMESTAMP", 64)?.to_owned();
    check_timestamp(&timestamp)?;
    let hostname = header_field(&mut rest, "HOSTNAME", 255)?.to_owned();
    let app_name = header_field(&mut rest, "APP-NAME", 48)?.to_owned();
    let procid = header_field(&mut rest, "PROCID", 128)?.to_owned();
    let msgid = header_field(&mut rest, "MSGID", 32)?.to_owned();
    let structured_data = structured_data(&mut rest)?.to_owned();
    let msg = match rest.first() {
        None => Vec::new(),
        Some(b' ') => rest[1..].to_vec(),
        Some(_) => return Err("MSG: structured data not followed by a space".into()),
    };
    Ok(SyslogMessage { pri: pri as u8, timestamp, hostname, app_name, procid, msgid, structured_data, msg })
}

/// Splits RFC 6587 §3.4.1 octet-counted frames (`LEN SP MSG`) off the front of `buf`, leaving
/// an incomplete tail in it. Errors when the bytes at a frame start are not a length prefix
/// (1 to 10 digits, no leading zero).
pub fn deframe_octet_counted(buf: &mut Vec<u8>) -> Result<Vec<Vec<u8>>, String> {
    let mut frames = Vec::new();
    let mut at = 0;
    loop {
        let rest = &buf[at..];
        let Some(sp) = rest.iter().position(|&b| b == b' ') else {
            if rest.len() > 10 || !rest.iter().all(u8::is_ascii_digit) {
                return Err("octet counting: no length prefix".into());
            }
            break;
        };
        let len_text = &rest[..sp];
        if len_text.is_empty() || len_text.len() > 10 || !len_text.iter().all(u8::is_ascii_digit) || len_text[0] == b'0'
        {
            return Err(format!("octet counting: bad length {:?}", String::from_utf8_lossy(len_text)));
        }
        let len: usize =
            std::str::from_utf8(len_text).expect("digits").parse().map_err(|_| "octet counting: length")?;
        if rest.len() < sp + 1 + len {
            break;
        }
        frames.push(rest[sp + 1..sp + 1 + len].to_vec());
        at += sp + 1 + len;
    }
    buf.drain(..at);
    Ok(frames)
}

/// Line `i` of a numbered test stream: `line NNNNNN ` padded with `x` to `size` bytes, so that
/// a receiver's messages can be put back in order with [`line_numbers`].
pub fn numbered_line(i: usize, size: usize) -> String {
    let head = format!("line {i:06} ");
    format!("{head}{}", "x".repeat(size.saturating_sub(head.len())))
}

/// The numbers of the [`numbered_line`]s among `msgs`, in the order they arrived; other
/// messages are skipped.
pub fn line_numbers(msgs: &[SyslogMessage]) -> Vec<usize> {
    msgs.iter().filter_map(|m| m.text().strip_prefix("line ")?.get(..6)?.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_messages() {
        let m = parse(b"<190>1 2023-11-14T22:13:20.123456Z api-default app web.1 - - hello").unwrap();
        assert_eq!(
            (m.pri, m.hostname.as_str(), m.procid.as_str(), m.text()),
            (190, "api-default", "web.1", "hello".into())
        );
        let m = parse(br#"<0>1 2023-11-14T22:13:20+01:00 h a p id [ex@1 k="v\"q\]"][b@2] m"#).unwrap();
        assert_eq!(m.structured_data, r#"[ex@1 k="v\"q\]"][b@2]"#);
        assert!(parse(b"<1>1 - - - - - -").unwrap().msg.is_empty());
    }

    #[test]
    fn rejects_invalid_messages() {
        for bad in [
            &b"190>1 - - - - - -"[..],
            b"<192>1 - - - - - -",
            b"<01>1 - - - - - -",
            b"<1>2 - - - - - -",
            b"<1>1 2023-11-14T22:13:20.1234567Z h a p m - x",
            b"<1>1 2023-11-14 h a p m - x",
            b"<1>1 - h aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa p m - x",
            b"<1>1 - h a p m [x k=v] x",
            b"<1>1 - h a p m -x",
            b"<1>1 - h\x01 a p m - x",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn deframes_octet_counting() {
        let mut buf = b"3 abc5 hello2 x".to_vec();
        assert_eq!(deframe_octet_counted(&mut buf).unwrap(), [b"abc".to_vec(), b"hello".to_vec()]);
        assert_eq!(buf, b"2 x");
        assert!(deframe_octet_counted(&mut b"abc def".to_vec()).is_err());
    }
}
