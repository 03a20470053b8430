//! What the REST clients (the Confluent schema registry, Kafka Connect) share: their base URL
//! with basic-auth credentials in its userinfo, and the encodings that go with it.

/// `http(s)://host[:port][/prefix]` without userinfo or trailing slash, and the credentials the
/// userinfo carried, percent-decoded.
#[derive(Debug, PartialEq)]
pub struct RestUrl {
    pub base: String,
    pub credentials: Option<(String, String)>,
}

impl RestUrl {
    /// `url` is `http(s)://[user[:password]@]host[:port][/path]`. A query or fragment is refused:
    /// a client appends its own paths to the base. The error is the reason alone; callers name
    /// the URL (redacted with [`crate::project::target::redact_url`]).
    pub fn parse(url: &str) -> Result<RestUrl, &'static str> {
        let (scheme, rest) = url.trim().split_once("://").ok_or("expected http:// or https://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err("expected http:// or https://");
        }
        if rest.contains(['?', '#']) {
            return Err("a query or fragment is not allowed");
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (userinfo, host) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        if host.is_empty() {
            return Err("no host");
        }
        let credentials = match userinfo {
            None => None,
            Some(info) => {
                let (user, password) = info.split_once(':').unwrap_or((info, ""));
                let user = percent_decode(user).ok_or("bad percent-encoding in the user name")?;
                let password = percent_decode(password).ok_or("bad percent-encoding in the password")?;
                Some((user, password))
            }
        };
        Ok(RestUrl { base: format!("{scheme}://{host}{}", path.trim_end_matches('/')), credentials })
    }
}

/// The `Authorization` header value for HTTP basic auth.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!("Basic {}", base64_encode(format!("{user}:{password}").as_bytes()))
}

/// Decodes `%XX` escapes; `None` for a broken escape or bytes that are not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters, so `/`, `:` and spaces in a
/// name stay inside one path segment.
pub fn escape_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Standard base64 with padding.
pub fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_base_and_credentials() {
        let url = RestUrl::parse(" HTTPS://KEY:p%3Ass@sr.example:8081/prefix/ ").unwrap();
        assert_eq!(url.base, "https://sr.example:8081/prefix");
        assert_eq!(url.credentials, Some(("KEY".to_string(), "p:ss".to_string())));
        assert_eq!(RestUrl::parse("http://connect:8083").unwrap().credentials, None);
        let user_only = RestUrl::parse("http://admin@os:9200").unwrap();
        assert_eq!(user_only.credentials, Some(("admin".to_string(), String::new())));
    }

    #[test]
    fn refuses_what_a_rest_client_cannot_use() {
        for (bad, why) in [
            ("sr:8081", "expected http:// or https://"),
            ("ftp://sr", "expected http:// or https://"),
            ("http://", "no host"),
            ("http://u:p@/x", "no host"),
            ("http://sr:8081/?x=1", "a query or fragment is not allowed"),
            ("http://sr#top", "a query or fragment is not allowed"),
            ("http://u:%zz@sr", "bad percent-encoding in the password"),
            ("http://%ff@sr", "bad percent-encoding in the user name"),
        ] {
            assert_eq!(RestUrl::parse(bad), Err(why), "{bad}");
        }
    }

    #[test]
    fn encodes_path_segments_and_base64() {
        assert_eq!(escape_path_segment("orders-value"), "orders-value");
        assert_eq!(escape_path_segment("shop/orders value%:é"), "shop%2Forders%20value%25%3A%C3%A9");
        for (input, want) in [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg==")] {
            assert_eq!(base64_encode(input.as_bytes()), want);
        }
        assert_eq!(basic_authorization("u", "p"), "Basic dTpw");
    }
}
