//! Redis's `string2ll`: the exact integer syntax Redis accepts in length headers.

/// Parses `s` the way Redis's `string2ll` does: optional `-`, no `+`, no leading
/// zeros (except the single digit `0`), no spaces, at most 20 bytes, no overflow.
///
/// Being exactly as strict as Redis matters: `*01\r\n` or `$ 3\r\n` must get the
/// same protocol error from turnstile as from Redis.
pub fn parse_ll(s: &[u8]) -> Option<i64> {
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
        ] {
            assert_eq!(parse_ll(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
