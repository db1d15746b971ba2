//! Splitting an inline command line into arguments, exactly as Redis's `sdssplitargs`.

/// Why an inline line could not be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnbalancedQuotes;

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

fn hex_val(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// C's `isspace` in the "C" locale, which `sdssplitargs` uses between arguments.
fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits one inline line (without its line ending) into arguments.
///
/// Mirrors `sdssplitargs`: double quotes with `\xHH`, `\n`, `\r`, `\t`, `\b`, `\a`
/// escapes, single quotes with `\'`, a closing quote must be followed by a space
/// or the end, and — because Redis works on a C string here — a NUL byte ends the
/// line outside quotes and is an unbalanced quote inside them.
pub fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, UnbalancedQuotes> {
    let at = |i: usize| -> u8 { line.get(i).copied().unwrap_or(0) };
    let mut args = Vec::new();
    let mut p = 0usize;
    loop {
        while at(p) != 0 && is_c_space(at(p)) {
            p += 1;
        }
        if at(p) == 0 {
            return Ok(args);
        }
        let (mut inq, mut insq, mut done) = (false, false, false);
        let mut current = Vec::new();
        while !done {
            let c = at(p);
            if inq {
                if c == b'\\' && at(p + 1) == b'x' && is_hex(at(p + 2)) && is_hex(at(p + 3)) {
                    current.push(hex_val(at(p + 2)) * 16 + hex_val(at(p + 3)));
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    current.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return Err(UnbalancedQuotes);
                    }
                    done = true;
                } else if c == 0 {
                    return Err(UnbalancedQuotes);
                } else {
                    current.push(c);
                }
            } else if insq {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    current.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_c_space(at(p + 1)) {
                        return Err(UnbalancedQuotes);
                    }
                    done = true;
                } else if c == 0 {
                    return Err(UnbalancedQuotes);
                } else {
                    current.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    other => current.push(other),
                }
            }
            if at(p) != 0 {
                p += 1;
            }
        }
        args.push(current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &[u8]) -> Vec<Vec<u8>> {
        split_args(s).expect("balanced")
    }

    #[test]
    fn plain_words() {
        assert_eq!(split(b"AUTH  pw"), vec![b"AUTH".to_vec(), b"pw".to_vec()]);
        assert_eq!(split(b"   "), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(split(br#"SET "a b" 'c d'"#)[1], b"a b");
        assert_eq!(split(br#"SET "a b" 'c d'"#)[2], b"c d");
        assert_eq!(split(br#"ECHO "\x41\n""#)[1], b"A\n");
        assert_eq!(split(br"ECHO 'it\'s'")[1], b"it's");
    }

    #[test]
    fn unbalanced() {
        assert_eq!(split_args(br#"ECHO "abc"#), Err(UnbalancedQuotes));
        assert_eq!(split_args(br#"ECHO "abc"x"#), Err(UnbalancedQuotes));
        assert_eq!(split_args(b"ECHO 'abc"), Err(UnbalancedQuotes));
    }

    #[test]
    fn nul_ends_the_line_like_a_c_string() {
        assert_eq!(split(b"PING\0 ignored"), vec![b"PING".to_vec()]);
    }
}
