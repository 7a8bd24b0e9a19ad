//! A small byte-oriented JSON reader/writer for RouterOS REST bodies.
//!
//! RouterOS puts names and comments into JSON in the router's code page, so a reply may contain
//! bytes that are not UTF-8 (routeros.md §7.13). serde_json would reject the whole reply; this
//! reader keeps string contents as raw bytes instead (decoding `\u` escapes to UTF-8), and the
//! writer emits our values' raw bytes, escaping only what JSON requires.
//!
//! Listings are read with [`Elements`]: it takes the reply in pieces as they arrive and hands
//! over each element of the top-level array as soon as its last byte is in, so a listing of
//! 10,000 rows never exists as one body or one tree.

/// A JSON value with byte strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's literal text.
    Num(String),
    Str(Vec<u8>),
    Arr(Vec<Json>),
    Obj(Vec<(Vec<u8>, Json)>),
}

const MAX_DEPTH: usize = 64;

pub fn parse(input: &[u8]) -> Result<Json, String> {
    let mut p = Parser { s: input, i: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("trailing data at byte {}", p.i));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > MAX_DEPTH {
            return Err("JSON nested too deeply".into());
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') if self.eat(b"true") => Ok(Json::Bool(true)),
            Some(b'f') if self.eat(b"false") => Ok(Json::Bool(false)),
            Some(b'n') if self.eat(b"null") => Ok(Json::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
                    self.i += 1;
                }
                Ok(Json::Num(
                    String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
                ))
            }
            _ => Err(format!("unexpected byte at {}", self.i)),
        }
    }

    fn object(&mut self, depth: usize) -> Result<Json, String> {
        self.i += 1;
        let mut out = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Json::Obj(out));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(format!("expected a key at byte {}", self.i));
            }
            let k = self.string()?;
            self.ws();
            if !self.eat(b":") {
                return Err(format!("expected ':' at byte {}", self.i));
            }
            self.ws();
            let v = self.value(depth + 1)?;
            out.push((k, v));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Json::Obj(out));
                }
                _ => return Err(format!("expected ',' or '}}' at byte {}", self.i)),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Json, String> {
        self.i += 1;
        let mut out = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Json::Arr(out));
        }
        loop {
            self.ws();
            out.push(self.value(depth + 1)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Json::Arr(out));
                }
                _ => return Err(format!("expected ',' or ']' at byte {}", self.i)),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or("truncated \\u escape")?;
        let h = std::str::from_utf8(h).map_err(|_| "bad \\u escape")?;
        let v = u32::from_str_radix(h, 16).map_err(|_| "bad \\u escape")?;
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<Vec<u8>, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let b = self.peek().ok_or("unterminated string")?;
            self.i += 1;
            match b {
                b'"' => return Ok(out),
                b'\\' => {
                    let e = self.peek().ok_or("unterminated escape")?;
                    self.i += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) && self.eat(b"\\u") {
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                }
                            }
                            let c = char::from_u32(cp).unwrap_or('\u{FFFD}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(format!("bad escape at byte {}", self.i)),
                    }
                }
                _ => out.push(b),
            }
        }
    }
}

/// Where [`Elements`] is in the top-level value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Top {
    /// Nothing but whitespace yet.
    Start,
    /// Inside the top-level array, between elements; the flags say what may come next.
    Between {
        element: bool,
        comma: bool,
        end: bool,
    },
    /// Inside an element that started at `start` of the buffer.
    Element { start: usize, depth: usize },
    /// After the closing `]`.
    Done,
    /// The top level is not an array: buffered whole and parsed at the end.
    Whole,
}

/// Reads a top-level JSON array piece by piece and yields each element once it is complete.
///
/// Only the element being received is buffered. A top-level value that is not an array (one
/// object, as REST answers for a singleton menu) is buffered whole and yielded by
/// [`finish`](Elements::finish); a reply that is not JSON at all comes back from `finish` as
/// [`NotJson`] with its bytes, so a caller can read the error text in it.
#[derive(Debug)]
pub struct Elements {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned.
    scanned: usize,
    top: Top,
    in_string: bool,
    escaped: bool,
}

/// A reply that is not the JSON it should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

/// What [`Elements::finish`] found instead of JSON: the bytes, for an error message.
#[derive(Debug)]
pub struct NotJson(pub Vec<u8>);

impl Default for Elements {
    fn default() -> Self {
        Elements {
            buf: Vec::new(),
            scanned: 0,
            top: Top::Start,
            in_string: false,
            escaped: false,
        }
    }
}

impl Elements {
    /// Takes the next piece of the reply and calls `element` for every element it completes.
    pub fn feed<E>(
        &mut self,
        piece: &[u8],
        element: &mut impl FnMut(Json) -> Result<(), E>,
    ) -> Result<(), E>
    where
        E: From<JsonError>,
    {
        self.buf.extend_from_slice(piece);
        while self.scanned < self.buf.len() {
            let at = self.scanned;
            let b = self.buf[at];
            self.scanned += 1;
            match self.top {
                Top::Whole => {
                    // Nothing to split: keep everything for `finish`.
                    self.scanned = self.buf.len();
                }
                Top::Start | Top::Done if b.is_ascii_whitespace() => {}
                Top::Start if b == b'[' => {
                    self.top = Top::Between {
                        element: true,
                        comma: false,
                        end: true,
                    };
                }
                Top::Start => self.top = Top::Whole,
                Top::Done => return Err(JsonError(format!("trailing data at byte {at}")).into()),
                Top::Between { .. } if b.is_ascii_whitespace() => {}
                Top::Between { comma: true, .. } if b == b',' => {
                    self.top = Top::Between {
                        element: true,
                        comma: false,
                        end: false,
                    };
                }
                Top::Between { end: true, .. } if b == b']' => self.top = Top::Done,
                // Rows are objects; the reader of a listing has no use for bare values.
                Top::Between { element: true, .. } if matches!(b, b'{' | b'[') => {
                    self.top = Top::Element {
                        start: at,
                        depth: 1,
                    };
                }
                Top::Between { element: true, .. } => {
                    return Err(
                        JsonError(format!("expected an object or array at byte {at}")).into(),
                    );
                }
                Top::Between { .. } => {
                    return Err(JsonError(format!("expected ',' or ']' at byte {at}")).into());
                }
                Top::Element { start, depth } => {
                    let depth = if self.in_string {
                        match (self.escaped, b) {
                            (true, _) => self.escaped = false,
                            (false, b'\\') => self.escaped = true,
                            (false, b'"') => self.in_string = false,
                            _ => {}
                        }
                        depth
                    } else {
                        match b {
                            b'"' => {
                                self.in_string = true;
                                depth
                            }
                            b'{' | b'[' => depth + 1,
                            b'}' | b']' => depth - 1,
                            _ => depth,
                        }
                    };
                    let closed = depth == 0;
                    if closed {
                        let value = parse(&self.buf[start..=at]).map_err(JsonError)?;
                        element(value)?;
                        self.top = Top::Between {
                            element: false,
                            comma: true,
                            end: true,
                        };
                    } else {
                        self.top = Top::Element { start, depth };
                    }
                }
            }
        }
        self.compact();
        Ok(())
    }

    /// Drops the bytes of elements already handed over.
    fn compact(&mut self) {
        let keep_from = match self.top {
            Top::Whole => return,
            Top::Element { start, .. } => start,
            _ => self.scanned,
        };
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.scanned -= keep_from;
            if let Top::Element { start, .. } = &mut self.top {
                *start -= keep_from;
            }
        }
    }

    /// Ends the reply: `Ok(None)` after a complete array, the whole value when the top level
    /// was not an array, `Err(Ok(_))` for a cut-off array or bad JSON, and `Err(Err(_))` for a
    /// reply that does not start like JSON (nothing but whitespace included).
    pub fn finish(self) -> Result<Option<Json>, Result<JsonError, NotJson>> {
        match self.top {
            Top::Done => Ok(None),
            Top::Between { .. } | Top::Element { .. } => {
                Err(Ok(JsonError("the reply ended inside the array".into())))
            }
            // Nothing but whitespace (dropped as scanned), or a value that is not an array.
            Top::Start => Err(Err(NotJson(Vec::new()))),
            Top::Whole => {
                let first = self.buf.iter().find(|b| !b.is_ascii_whitespace());
                if !matches!(
                    first,
                    Some(b'{' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9')
                ) {
                    return Err(Err(NotJson(self.buf)));
                }
                parse(self.buf.trim_ascii())
                    .map(Some)
                    .map_err(|e| Ok(JsonError(e)))
            }
        }
    }
}

/// Appends `bytes` as a JSON string; non-ASCII bytes are copied as they are.
pub fn write_str(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..0x20 | 0x7F => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// `{"k":"v",...}` from string pairs.
pub fn write_object<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Vec<u8> {
    let mut out = vec![b'{'];
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(&mut out, k.as_bytes());
        out.push(b':');
        write_str(&mut out, v);
    }
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_routeros_shapes() {
        let v = parse(br#"[{".id":"*1","name":"a\"b","n":"1500"},{}]"#).unwrap();
        let Json::Arr(rows) = v else { panic!() };
        assert_eq!(rows.len(), 2);
        let v = parse(br#"{"detail":"x","error":400,"message":"Bad Request"}"#).unwrap();
        assert!(matches!(v, Json::Obj(ref o) if o[1].1 == Json::Num("400".into())));
        assert_eq!(parse(b" [ ] ").unwrap(), Json::Arr(vec![]));
    }

    #[test]
    fn keeps_non_utf8_bytes_and_decodes_escapes() {
        let v = parse(b"{\"name\":\"caf\xe9 \\u00e9 \\ud83d\\ude00\"}").unwrap();
        let Json::Obj(o) = v else { panic!() };
        let Json::Str(s) = &o[0].1 else { panic!() };
        assert_eq!(s, &b"caf\xe9 \xc3\xa9 \xf0\x9f\x98\x80".to_vec());
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            &b""[..],
            b"{",
            b"[1,",
            b"{\"a\" 1}",
            b"\"abc",
            b"[1]x",
            b"\"\\u12\"",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let deep = "[".repeat(1000);
        assert!(parse(deep.as_bytes()).is_err());
    }

    /// Feeds `body` in pieces of `size` bytes and returns the elements and how it ended.
    fn split(body: &[u8], size: usize) -> (Vec<Json>, Result<Option<Json>, String>) {
        let mut elements = Elements::default();
        let mut out = Vec::new();
        for piece in body.chunks(size.max(1)) {
            if let Err(JsonError(e)) = elements.feed(piece, &mut |v| {
                out.push(v);
                Ok::<_, JsonError>(())
            }) {
                return (out, Err(e));
            }
        }
        let end = elements.finish().map_err(|e| match e {
            Ok(JsonError(e)) => e,
            Err(NotJson(b)) => format!("not JSON: {:?}", String::from_utf8_lossy(&b)),
        });
        (out, end)
    }

    #[test]
    fn elements_come_out_whole_however_the_body_is_cut() {
        let body = br#" [ {".id":"*1","name":"a]\"}{"}, {"x":[1,{"y":"}"}]} ,{} ] "#;
        let Json::Arr(want) = parse(body).unwrap() else {
            panic!()
        };
        for size in 1..body.len() {
            let (got, end) = split(body, size);
            assert_eq!(got, want, "pieces of {size}");
            assert_eq!(end, Ok(None));
        }
    }

    #[test]
    fn a_single_object_an_empty_body_and_garbage_are_told_apart() {
        let (rows, end) = split(br#"{"name":"identity"}"#, 3);
        assert!(rows.is_empty());
        assert!(matches!(end, Ok(Some(Json::Obj(_)))));
        assert_eq!(split(b"  \n ", 2).1, Err("not JSON: \"\"".into()));
        let (_, end) = split(b"bad command name serialize", 4);
        assert!(end.unwrap_err().contains("bad command"));
        for bad in [&b"[{}"[..], b"[{} {}]", b"[1]", b"[{}] x", b"[{\"a\" 1}]"] {
            let (_, end) = split(bad, 2);
            assert!(end.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    proptest! {
        #[test]
        fn split_bodies_give_the_rows_of_the_whole(
            names in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..8),
            size in 1usize..40,
        ) {
            let mut body = b"[".to_vec();
            for (i, n) in names.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend(write_object([("name", n.as_slice())]));
            }
            body.push(b']');
            let Json::Arr(want) = parse(&body).unwrap() else { panic!() };
            let (got, end) = split(&body, size);
            prop_assert_eq!(got, want);
            prop_assert_eq!(end, Ok(None));
        }

        #[test]
        fn written_strings_read_back_identically(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let body = write_object([("k", bytes.as_slice())]);
            let Json::Obj(o) = parse(&body).unwrap() else { panic!() };
            prop_assert_eq!(&o[0].1, &Json::Str(bytes));
        }

        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&bytes);
        }
    }
}
