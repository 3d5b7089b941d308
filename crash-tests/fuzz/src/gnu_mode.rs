//! Reference evaluation of `install -m MODE` for the `mode` fuzz target.
//!
//! Deliberately written differently from `parse.rs`: a two-phase design like GNU coreutils
//! (compile the string into a list of changes scanning a NUL-terminated buffer, then apply the
//! list to a mode), with the behaviour of GNU coreutils 9.x `chmod`/`install` as observed on
//! the command line (`umask 0; chmod 0 f; chmod MODE f; stat -c %a f`). `install -m` applies
//! the changes to mode 0, for a non-directory, with umask 0. The unit tests of `parse.rs`
//! compare against the real `chmod` binary; this oracle lets libFuzzer do the same millions
//! of times per minute.

const ALLM: u32 = 0o7777;
const SUID: u32 = 0o4000;
const SGID: u32 = 0o2000;
const SVTX: u32 = 0o1000;
const RWXU: u32 = 0o700;
const RWXG: u32 = 0o070;
const RWXO: u32 = 0o007;
const R: u32 = 0o444;
const W: u32 = 0o222;
const X: u32 = 0o111;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flag {
    Ordinary,
    XIfAnyX,
    CopyExisting,
}

struct Change {
    op: u8,
    flag: Flag,
    affected: u32,
    value: u32,
}

/// GNU's evaluation of `mode` for `install -m`: `None` where GNU says "invalid mode".
/// (Octal strings of any length are GNU's rule; atomwrite's own octal rule is narrower and
/// is checked separately by the target.)
pub fn install_m(mode: &[u8]) -> Option<u32> {
    let changes = compile(mode)?;
    Some(adjust(&changes))
}

fn compile(s: &[u8]) -> Option<Vec<Change>> {
    // The C code walks a NUL-terminated string; `at` reads 0 past the end.
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    let is_octal = |c: u8| (b'0'..b'8').contains(&c);
    let mut i = 0;

    if is_octal(at(0)) {
        let mut v = 0u32;
        while is_octal(at(i)) {
            v = v * 8 + u32::from(at(i) - b'0');
            if v > ALLM {
                return None;
            }
            i += 1;
        }
        if i != s.len() {
            return None;
        }
        return Some(vec![Change {
            op: b'=',
            flag: Flag::Ordinary,
            affected: ALLM,
            value: v,
        }]);
    }

    let mut out = Vec::new();
    loop {
        // Who.
        let mut affected = 0u32;
        loop {
            match at(i) {
                b'u' => affected |= SUID | RWXU,
                b'g' => affected |= SGID | RWXG,
                b'o' => affected |= SVTX | RWXO,
                b'a' => affected |= ALLM,
                b'=' | b'+' | b'-' => break,
                _ => return None,
            }
            i += 1;
        }
        // One or more operations.
        loop {
            let op = at(i);
            i += 1;
            let (value, flag) = match at(i) {
                c if is_octal(c) => {
                    let mut v = 0u32;
                    while is_octal(at(i)) {
                        v = v * 8 + u32::from(at(i) - b'0');
                        if v > ALLM {
                            return None;
                        }
                        i += 1;
                    }
                    if affected != 0 || (at(i) != 0 && at(i) != b',') {
                        return None;
                    }
                    affected = ALLM;
                    (v, Flag::Ordinary)
                }
                b'u' => {
                    i += 1;
                    (RWXU, Flag::CopyExisting)
                }
                b'g' => {
                    i += 1;
                    (RWXG, Flag::CopyExisting)
                }
                b'o' => {
                    i += 1;
                    (RWXO, Flag::CopyExisting)
                }
                _ => {
                    let mut v = 0;
                    let mut flag = Flag::Ordinary;
                    loop {
                        match at(i) {
                            b'r' => v |= R,
                            b'w' => v |= W,
                            b'x' => v |= X,
                            b'X' => flag = Flag::XIfAnyX,
                            b's' => v |= SUID | SGID,
                            b't' => v |= SVTX,
                            _ => break,
                        }
                        i += 1;
                    }
                    (v, flag)
                }
            };
            out.push(Change {
                op,
                flag,
                affected,
                value,
            });
            if !matches!(at(i), b'=' | b'+' | b'-') {
                break;
            }
        }
        let c = at(i);
        i += 1;
        if c != b',' {
            // The whole string must have been consumed, and end exactly there.
            return (c == 0 && i == s.len() + 1).then_some(out);
        }
    }
}

/// Applies the changes to mode 0 of a regular file under umask 0.
fn adjust(changes: &[Change]) -> u32 {
    let mut m = 0u32;
    for c in changes {
        let mut value = c.value;
        match c.flag {
            Flag::Ordinary => {}
            Flag::CopyExisting => {
                value &= m;
                value = (if value & R != 0 { R } else { 0 })
                    | (if value & W != 0 { W } else { 0 })
                    | (if value & X != 0 { X } else { 0 });
            }
            Flag::XIfAnyX => {
                if m & X != 0 {
                    value |= X;
                }
            }
        }
        // No who: every bit the umask (0) lets through.
        value &= if c.affected != 0 { c.affected } else { ALLM };
        m = match c.op {
            b'=' => {
                let keep = if c.affected != 0 { !c.affected } else { 0 };
                (m & keep) | value
            }
            b'+' => m | value,
            _ => m & !value,
        };
    }
    m & ALLM
}

#[cfg(test)]
mod tests {
    use super::install_m;

    #[test]
    fn known_values() {
        // Observed with GNU coreutils 9.1.
        for (m, want) in [
            ("u=rw,go=r", Some(0o644)),
            ("a+x", Some(0o111)),
            ("=s", Some(0o6000)),
            ("u+x,+X", Some(0o111)),
            ("+X", Some(0)),
            ("u=g", Some(0)),
            ("u-=", Some(0)),
            ("-1", Some(0)),
            ("=00000000644", Some(0o644)),
            ("0000644", Some(0o644)),
            ("=644=755", None),
            ("=644+x", None),
            ("a+644", None),
            ("=644u", None),
            ("u=rw,", None),
            ("", None),
        ] {
            assert_eq!(install_m(m.as_bytes()), want, "{m}");
        }
    }

    /// The oracle against the real GNU `chmod` (umask 0, file at mode 0): the same evaluation
    /// as `install -m`. Skipped (with a message) where chmod is not GNU coreutils.
    fn gnu_chmod(mode: &str) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("atomwrite-fuzz-oracle-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("f");
        std::fs::write(&f, b"").unwrap();
        let ok = std::process::Command::new("sh")
            .args([
                "-c",
                r#"umask 0 && chmod 0 "$1" && chmod -- "$2" "$1" 2>/dev/null"#,
                "sh",
            ])
            .arg(&f)
            .arg(mode)
            .status()
            .unwrap()
            .success();
        let m = std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777;
        ok.then_some(m)
    }

    fn have_gnu_chmod() -> bool {
        let out = std::process::Command::new("chmod")
            .arg("--version")
            .output();
        let gnu = out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("GNU coreutils"));
        if !gnu {
            eprintln!("skipping: chmod is not GNU coreutils");
        }
        gnu
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn oracle_agrees_with_gnu_chmod(m in "[ugoa+=,rwxXst0-9-]{1,10}") {
            if have_gnu_chmod() {
                proptest::prop_assert_eq!(install_m(m.as_bytes()), gnu_chmod(&m), "{}", m);
            }
        }
    }
}
