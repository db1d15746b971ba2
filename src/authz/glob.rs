//! Redis's glob matching (`stringmatchlen` in util.c), case-insensitive as
//! `CONFIG GET` uses it: `*`, `?`, `[abc]`, `[^a-z]` and `\` escapes.

/// Whether `pattern` matches `s`, ignoring ASCII case.
pub fn matches(pattern: &[u8], s: &[u8]) -> bool {
    // Redis bounds its recursion on `*`; an iterative matcher with one backtrack
    // point needs no bound and is linear in practice.
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, i));
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    if let Some((true, next)) = class(pattern, p + 1, s[i]) {
                        p = next;
                        i += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1].eq_ignore_ascii_case(&s[i]) {
                        p += 2;
                        i += 1;
                        continue;
                    }
                }
                c => {
                    if c.eq_ignore_ascii_case(&s[i]) {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A `[…]` class starting after the `[` at `p`: whether `c` is in it, and where
/// the pattern goes on after it. None if the class is not closed (then Redis
/// treats the rest as the class: it matches as far as it goes).
fn class(pattern: &[u8], mut p: usize, c: u8) -> Option<(bool, usize)> {
    let not = pattern.get(p) == Some(&b'^');
    if not {
        p += 1;
    }
    let c = c.to_ascii_lowercase();
    let mut hit = false;
    loop {
        let &x = pattern.get(p)?;
        if x == b']' {
            return Some((hit != not, p + 1));
        }
        if x == b'\\' && p + 1 < pattern.len() {
            hit |= pattern[p + 1].to_ascii_lowercase() == c;
            p += 2;
        } else if pattern.get(p + 1) == Some(&b'-') && p + 2 < pattern.len() && pattern[p + 2] != b']' {
            let (mut a, mut b) = (x.to_ascii_lowercase(), pattern[p + 2].to_ascii_lowercase());
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            hit |= (a..=b).contains(&c);
            p += 3;
        } else {
            hit |= x.to_ascii_lowercase() == c;
            p += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        assert!(matches(b"*", b"requirepass"));
        assert!(matches(b"*max-*-entries*", b"hash-max-listpack-entries"));
        assert!(matches(b"MAXMEMORY", b"maxmemory"));
        assert!(matches(b"maxmemory-*", b"maxmemory-policy"));
        assert!(!matches(b"maxmemory-*", b"maxmemory"));
        assert!(matches(b"m?xmemory", b"maxmemory"));
        assert!(matches(b"[lm]axmemory", b"maxmemory"));
        assert!(!matches(b"[^m]axmemory", b"maxmemory"));
        assert!(matches(b"[a-z]axmemory", b"maxmemory"));
        assert!(matches(b"max\\memory", b"maxmemory"));
        assert!(!matches(b"", b"x"));
        assert!(matches(b"", b""));
    }
}
