//! A byte-preserving JSON writer for REST replies. RouterOS puts raw (possibly non-UTF-8)
//! value bytes inside JSON strings (routeros.md §7.13), which serde_json cannot produce; this
//! writer escapes only what JSON requires and passes other bytes through unchanged.

use super::state::Rendered;

fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x00..=0x1F => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// `{"k":"v",...}` with every value a string.
pub fn object(row: &Rendered) -> Vec<u8> {
    let mut out = Vec::with_capacity(row.len() * 24);
    write_object(&mut out, row);
    out
}

fn write_object(out: &mut Vec<u8>, row: &Rendered) {
    out.push(b'{');
    for (i, (k, v)) in row.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_string(out, k.as_bytes());
        out.push(b':');
        push_string(out, v);
    }
    out.push(b'}');
}

/// `[{...},...]`.
pub fn array(rows: &[Rendered]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 256 + 2);
    out.push(b'[');
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_object(&mut out, r);
    }
    out.push(b']');
    out
}

/// The RouterOS error body: `{"detail":...,"error":N,"message":...}`; `detail` optional.
pub fn error(status: u16, message: &str, detail: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(b'{');
    if let Some(d) = detail {
        push_string(&mut out, b"detail");
        out.push(b':');
        push_string(&mut out, d);
        out.push(b',');
    }
    out.extend_from_slice(format!("\"error\":{status},\"message\":").as_bytes());
    push_string(&mut out, message.as_bytes());
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_bytes_pass_through_and_json_specials_are_escaped() {
        let row: Rendered = vec![("comment".into(), b"caf\xe9 \"q\"\n".to_vec())];
        assert_eq!(
            object(&row),
            b"{\"comment\":\"caf\xe9 \\\"q\\\"\\n\"}".to_vec()
        );
        assert_eq!(
            error(404, "Not Found", None),
            br#"{"error":404,"message":"Not Found"}"#.to_vec()
        );
    }
}
