//! Redis's `string2ll`: the exact integer syntax Redis accepts in length headers.

/// Parses `s` the way Redis's `string2ll` does: optional `-`, no `+`, no leading
/// zeros (except the single digit `0`), no spaces, at most 20 bytes, no overflow.
///
/// Being exactly as strict as Redis matters: `*01\r\n` or `$ 3\r\n` must get the
/// same protocol error from turnstile as from Redis.
pub fn parse_ll(s: &[u8]) -> Option<i64> {
    // Nearly every length header takes this path (a reply's `$3`, a request's when
    // the one-pass parse leaves it here): up to 18 digits with no leading zero
    // cannot overflow an i64, so no checked arithmetic is needed.
    if let [first @ b'1'..=b'9', rest @ ..] = s
        && rest.len() < 18
    {
        let mut v = u64::from(first - b'0');
        for &c in rest {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            v = v * 10 + u64::from(d);
        }
        return Some(v as i64);
    }
    // LONG_STR_SIZE in Redis is 21: anything that long is rejected up front.
    if s.is_empty() || s.len() >= 21 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s[0] {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    if negative {
        // -(i64::MIN) does not fit in i64, hence the u64 detour.
        if v > (i64::MAX as u64) + 1 {
            return None;
        }
        Some((v as i64).wrapping_neg())
    } else {
        i64::try_from(v).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ll;

    #[test]
    fn accepts_what_redis_accepts() {
        assert_eq!(parse_ll(b"0"), Some(0));
        assert_eq!(parse_ll(b"10"), Some(10));
        assert_eq!(parse_ll(b"-1"), Some(-1));
        assert_eq!(parse_ll(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_ll(b"-9223372036854775808"), Some(i64::MIN));
        // Either side of the fast path's 18 digits.
        assert_eq!(parse_ll(b"123456789012345678"), Some(123_456_789_012_345_678));
        assert_eq!(parse_ll(b"1234567890123456789"), Some(1_234_567_890_123_456_789));
    }

    /// The fast path agrees with the checked loop on every short number and on
    /// every byte that could follow a digit.
    #[test]
    fn the_fast_path_agrees_with_the_checked_loop() {
        fn checked(s: &[u8]) -> Option<i64> {
            std::str::from_utf8(s)
                .ok()
                .filter(|t| !t.starts_with('+') && !t.starts_with('0') || *t == "0")
                .and_then(|t| t.parse().ok())
        }
        for n in 0..20_000i64 {
            let t = n.to_string();
            assert_eq!(parse_ll(t.as_bytes()), Some(n));
            for b in 0..=255u8 {
                let mut v = t.clone().into_bytes();
                v.push(b);
                assert_eq!(parse_ll(&v), checked(&v), "{v:?}");
            }
        }
    }

    #[test]
    fn rejects_what_redis_rejects() {
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"x",
            b"1x",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"123456789012345678901",
            b"1-",
            b"1/",
            b"1:",
            b"12345678901234567\r",
        ] {
            assert_eq!(parse_ll(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
