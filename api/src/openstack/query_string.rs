//! The one query-string codec of the OpenStack layer: `application/x-www-form-urlencoded`
//! pairs decoded with repeated keys kept (Nova's `status=A&status=B`, Glance's several
//! `tag`s), and query components encoded for the `next` links the lists render.

/// The pairs of a raw query string (`None`: no query), in order, repeated keys kept; `+` is a
/// space, `%XX` a byte (a malformed escape stays as written), a key without `=` has an empty
/// value.
pub fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Every value given for `key` in `pairs`, in order.
pub fn values<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// One decoded query component (see [`pairs`]).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push(u8::try_from(h * 16 + l).unwrap_or(b'%'));
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encoding of a query component: unreserved characters (RFC 3986) as they are,
/// every other byte as `%XX`.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `k=v&k=v` of `pairs`, each component encoded.
pub fn render<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs_in_order_with_repeats() {
        let table: &[(&str, &[(&str, &str)])] = &[
            ("", &[]),
            ("a=1", &[("a", "1")]),
            (
                "status=ACTIVE&status=SHUTOFF&name=web%201+x&all_tenants",
                &[
                    ("status", "ACTIVE"),
                    ("status", "SHUTOFF"),
                    ("name", "web 1 x"),
                    ("all_tenants", ""),
                ],
            ),
            ("tag=a&&tag=b%20c", &[("tag", "a"), ("tag", "b c")]),
            ("bad=%zz&end=%4", &[("bad", "%zz"), ("end", "%4")]),
            ("k%3D=v%3D", &[("k=", "v=")]),
        ];
        for (raw, want) in table {
            let got = pairs(Some(raw));
            let got: Vec<(&str, &str)> =
                got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            assert_eq!(&got, want, "{raw}");
        }
        assert!(pairs(None).is_empty());
    }

    #[test]
    fn values_of_a_key_keep_their_order() {
        let p = pairs(Some("tag=a&limit=1&tag=b%20c"));
        assert_eq!(values(&p, "tag"), ["a", "b c"]);
        assert!(values(&p, "marker").is_empty());
    }

    #[test]
    fn encodes_what_is_not_unreserved() {
        assert_eq!(encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode("web 1/x:y"), "web%201%2Fx%3Ay");
        assert_eq!(
            render([("name", "a b"), ("limit", "2")]),
            "name=a%20b&limit=2"
        );
        assert_eq!(pairs(Some(&render([("k", "ä&=")])))[0].1, "ä&=");
    }
}
