//! Parsers for the CLI's option values: modes, durations and sizes.
//!
//! This file is standalone on purpose (only `std` and `humantime`, no `crate::` paths): the
//! coverage-guided fuzz targets in `crash-tests/fuzz/` include it with `#[path = ...]`, so the
//! code fuzzed is the code shipped.

use std::time::Duration;

/// The permission bits a mode may hold: `rwx` for user, group and others plus set-uid,
/// set-gid and sticky.
pub const MODE_BITS: u32 = 0o7777;

const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;
const S_IRWXU: u32 = 0o700;
const S_IRWXG: u32 = 0o070;
const S_IRWXO: u32 = 0o007;
const ALL_R: u32 = 0o444;
const ALL_W: u32 = 0o222;
const ALL_X: u32 = 0o111;

/// Parses a file mode the way GNU `install -m` does, octal or symbolic.
///
/// - **Octal**: `644`, `0644`, `0o644`: one to five octal digits (after an optional `0o`), at
///   most `7777`.
/// - **Symbolic**: a comma-separated list of clauses `[ugoa]*([-+=]([rwxXst]*|[ugo]))+` or
///   `[-+=]OCTAL`, as GNU `chmod` and `install -m` accept them: `u=rw,go=r`, `a+x`, `u+s`, `g-w`, `=r`,
///   `ug=rwx,o=`, `go=u`, `=644`.
///
/// A symbolic mode is evaluated against a **base of 0** (no bits), ignoring the umask, for a
/// regular file: exactly GNU `install -m MODE` (`mode_adjust(0, false, 0, ...)` in coreutils).
/// So `a+x` gives `0111` and `u=rw,go=r` gives `0644`, whether or not the destination exists:
/// `--mode` sets the final mode of the file atomwrite creates, it does not edit the mode of the
/// file it replaces (that file is never modified; its replacement is a new inode). Evaluating
/// at parse time also means a mode is checked, and its value known, before anything is written.
/// Without a `who` (`+x`, `=r`) the bits apply to user, group and others (the umask, which
/// `chmod` would apply there, is 0 for `install -m`). `X` adds execute only if some execute bit
/// is already set by an earlier clause (the file is never a directory here).
///
/// Guarantees: never panics; every accepted value is `<= 0o7777`. Does not accept what GNU
/// rejects; the one difference is octal: more than five digits (`000644`) is refused here and
/// `0o644` is accepted.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        return parse_octal_mode(s);
    }
    parse_symbolic_mode(s)
        .ok_or_else(|| format!("`{s}` is not a mode (e.g. 644, 0640, u=rw,go=r or a+x)"))
}

fn parse_octal_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|c| (b'0'..=b'7').contains(&c))
    {
        return Err(format!("`{s}` is not an octal mode (e.g. 644 or 0640)"));
    }
    let m = u32::from_str_radix(digits, 8).map_err(|e| e.to_string())?;
    if m > MODE_BITS {
        return Err(format!("`{s}` is larger than 7777"));
    }
    Ok(m)
}

/// What one operation sets: a fixed set of bits, a copy of a class's current bits, or fixed
/// bits plus `X`.
#[derive(Clone, Copy)]
enum Perm {
    Bits { bits: u32, cond_x: bool },
    Copy(u32),
    Octal(u32),
}

/// Evaluates a symbolic mode against a base of 0 (see [`parse_mode`]); `None` if malformed.
fn parse_symbolic_mode(s: &str) -> Option<u32> {
    let mut mode = 0u32;
    for clause in s.split(',') {
        mode = apply_clause(clause.as_bytes(), mode)?;
    }
    Some(mode)
}

/// Applies one clause (`[ugoa]*` then one or more operations) to `mode`.
fn apply_clause(clause: &[u8], mut mode: u32) -> Option<u32> {
    let who_len = clause
        .iter()
        .position(|c| !b"ugoa".contains(c))
        .unwrap_or(clause.len());
    let who = clause[..who_len].iter().fold(0, |w, c| {
        w | match c {
            b'u' => S_ISUID | S_IRWXU,
            b'g' => S_ISGID | S_IRWXG,
            b'o' => S_ISVTX | S_IRWXO,
            _ => MODE_BITS,
        }
    });
    let mut rest = &clause[who_len..];
    if rest.is_empty() {
        return None; // a clause needs at least one operation
    }
    while let Some((&op, after)) = rest.split_first() {
        if !b"+-=".contains(&op) {
            return None;
        }
        let (perm, n) = parse_perm(after, who)?;
        rest = &after[n..];
        if matches!(perm, Perm::Octal(_)) && !rest.is_empty() {
            return None; // an octal operand ends its clause (`=644+x` is refused, as GNU does)
        }
        mode = apply_op(mode, op, who, perm);
    }
    Some(mode)
}

/// Parses what follows an operator: `[rwxXst]*`, one of `u`/`g`/`o`, or octal digits (only
/// without a `who`, and only as the clause's last operation). Returns the permission and the bytes consumed.
fn parse_perm(s: &[u8], who: u32) -> Option<(Perm, usize)> {
    match s.first() {
        Some(b'u') => return Some((Perm::Copy(S_IRWXU), 1)),
        Some(b'g') => return Some((Perm::Copy(S_IRWXG), 1)),
        Some(b'o') => return Some((Perm::Copy(S_IRWXO), 1)),
        Some(b'0'..=b'7') => {
            if who != 0 {
                return None; // `u=644` is refused, as GNU does
            }
            let n = s.iter().take_while(|c| (b'0'..=b'7').contains(c)).count();
            let mut v = 0u32;
            for &c in &s[..n] {
                v = v * 8 + u32::from(c - b'0');
                if v > MODE_BITS {
                    return None;
                }
            }
            return Some((Perm::Octal(v), n));
        }
        _ => {}
    }
    let mut bits = 0;
    let mut cond_x = false;
    let mut n = 0;
    for &c in s {
        match c {
            b'r' => bits |= ALL_R,
            b'w' => bits |= ALL_W,
            b'x' => bits |= ALL_X,
            b'X' => cond_x = true,
            b's' => bits |= S_ISUID | S_ISGID,
            b't' => bits |= S_ISVTX,
            _ => break,
        }
        n += 1;
    }
    Some((Perm::Bits { bits, cond_x }, n))
}

/// One operation of a clause on a regular file with umask 0 (coreutils' `mode_adjust`).
fn apply_op(mode: u32, op: u8, who: u32, perm: Perm) -> u32 {
    let (value, who) = match perm {
        Perm::Bits { bits, cond_x } => {
            let x = if cond_x && mode & ALL_X != 0 {
                ALL_X
            } else {
                0
            };
            (bits | x, who)
        }
        Perm::Copy(class) => {
            // The class's current bits, spread to all three classes.
            let v = mode & class;
            let mut spread = 0;
            for (mask, all) in [(ALL_R, ALL_R), (ALL_W, ALL_W), (ALL_X, ALL_X)] {
                if v & mask != 0 {
                    spread |= all;
                }
            }
            (spread, who)
        }
        // An octal operand always addresses every bit.
        Perm::Octal(v) => (v, MODE_BITS),
    };
    // No `who` means all bits (the umask is 0 here, as for `install -m`).
    let affected = if who == 0 { MODE_BITS } else { who };
    let value = value & affected;
    match op {
        b'+' => mode | value,
        b'-' => mode & !value,
        _ => (mode & !affected) | value,
    }
}

/// Parses a duration: a bare number of seconds (`90`) or humantime's syntax (`90s`, `15m`,
/// `1h`, `2d`, `1h30m`, `1h 30m`). Leading and trailing whitespace is ignored.
///
/// Guarantees: never panics; a bare number is exactly that many seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
        return s
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| format!("`{s}`: {e}"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration (e.g. 30s, 15m, 1h, 2d): {e}"))
}

/// Most digits after the decimal point of a size (keeps the arithmetic exact in `u128`).
const MAX_FRACTION_DIGITS: usize = 24;

/// Parses a byte size: `1048576`, `512K`, `4M`, `1.5G`, `2T` (binary multiples, like `dd`'s
/// `K`/`M`; `KiB`/`MiB` spellings accepted; `KB`/`MB`/`GB`/`TB` are powers of 1000). A
/// fraction is allowed (`1.5G`, `.5K`, up to 24 decimal places); the result is rounded to the
/// nearest byte, halves up. Whitespace around the number and the unit is ignored.
///
/// Guarantees: never panics; the arithmetic is exact (no floating point), so `N` is exactly `N`
/// bytes for every `u64` and `N<unit>` is exactly `N * unit`; a value above `u64::MAX` is an
/// error, never a wrapped or saturated number.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not a size (e.g. 4096, 512K, 4M, 1.5G)");
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: u128 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return Err(bad());
    }
    if frac.len() > MAX_FRACTION_DIGITS {
        return Err(format!(
            "`{s}` has more than {MAX_FRACTION_DIGITS} decimal places"
        ));
    }
    let too_large = || format!("`{s}` is too large");
    let mut whole: u128 = 0;
    for c in int.bytes() {
        whole = whole
            .checked_mul(10)
            .and_then(|w| w.checked_add(u128::from(c - b'0')))
            .filter(|&w| w <= u128::from(u64::MAX))
            .ok_or_else(too_large)?;
    }
    // frac < 10^24 and mult <= 2^40, so frac * mult < 2^120: no overflow.
    let (mut f, mut scale) = (0u128, 1u128);
    for c in frac.bytes() {
        f = f * 10 + u128::from(c - b'0');
        scale *= 10;
    }
    let frac_bytes = (f * mult + scale / 2) / scale;
    let bytes = whole
        .checked_mul(mult)
        .and_then(|b| b.checked_add(frac_bytes))
        .ok_or_else(too_large)?;
    u64::try_from(bytes).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn octal_modes() {
        assert_eq!(parse_mode("644"), Ok(0o644));
        assert_eq!(parse_mode("0o4755"), Ok(0o4755));
        assert_eq!(parse_mode("07777"), Ok(0o7777));
        assert_eq!(parse_mode("0"), Ok(0));
        for bad in [
            "", "8", "0x1", "17777", "644 ", " 644", "0o", "abc", "000000", "0o8", "64a",
        ] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn symbolic_modes_as_install_m() {
        // Expected values: GNU coreutils 9 `install -m MODE` on a new file.
        for (m, want) in [
            ("u=rw,go=r", 0o644),
            ("a+x", 0o111),
            ("u+s", 0o4000),
            ("g-w", 0),
            ("=r", 0o444),
            ("+x", 0o111),
            ("u=rwx,g=rx,o=", 0o750),
            ("ug=rw,o=r", 0o664),
            ("a=rwx,g-w,o-wx", 0o754),
            ("u=rw,g=u", 0o660),
            ("u=rw,go=u-w", 0o644),
            ("a=r,u+w", 0o644),
            ("u=rwxs,g=rxs,o=rx", 0o6755),
            ("+t", 0o1000),
            ("o+t", 0o1000),
            ("u+t", 0),
            ("a+s", 0o6000),
            ("+s", 0o6000),
            ("u+x,a+X", 0o111),
            ("a+X", 0),
            ("a=", 0),
            ("=", 0),
            ("+", 0),
            ("u=r=w", 0o200),
            ("u-=", 0),
            ("=00000000644", 0o644),
            ("u+rw-r", 0o200),
            ("=644", 0o644),
            ("+0644,-0044", 0o600),
            ("-1", 0),
            ("=04755", 0o4755),
            ("go=r,u=w", 0o244),
            ("uuu+r", 0o400),
            ("ao+r", 0o444),
        ] {
            assert_eq!(
                parse_mode(m),
                Ok(want),
                "{m}: got {:o}",
                parse_mode(m).unwrap_or(0)
            );
        }
        for bad in [
            "u",
            "x",
            "u=rwz",
            "u=rw,",
            ",u=rw",
            "u=rw,,go=r",
            "u=644",
            "=17777",
            "u=rwo",
            "u=ug",
            "a+r x",
            " u=r",
            "U=r",
            "+8",
            "=64a",
            "ugo",
            "=644=755",
            "=644+x",
            "=644u",
        ] {
            assert!(parse_mode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 90 "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        for bad in ["", "h", "-1s", "1 fortnight", "99999999999999999999"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("4 MiB"), Ok(4 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size(".5K"), Ok(512));
        assert_eq!(parse_size("1."), Ok(1));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("0.5B"), Ok(1), "halves round up");
        assert_eq!(parse_size("0.4999B"), Ok(0));
        assert_eq!(
            parse_size("16777215.5T"),
            Ok((16_777_215 << 40) + (1 << 39))
        );
        assert_eq!(
            parse_size("1.000000000000000000000005B"),
            Ok(1),
            "24 places"
        );
        assert!(
            parse_size("1.0000000000000000000000005B").is_err(),
            "25 places"
        );
        for bad in [
            "",
            "M",
            ".",
            "4X",
            "1..2K",
            "1.2.3",
            "-1",
            "4 M M",
            "1e3",
            "+1",
            "16777216T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    /// The old f64 arithmetic rounded integers above 2^53 (seen while writing the `size` fuzz
    /// target's exactness property; the target checks it for every input).
    #[test]
    fn large_integer_sizes_are_exact() {
        assert_eq!(parse_size("9007199254740993"), Ok(9_007_199_254_740_993));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_size("18446744073709551616").is_err());
        assert_eq!(parse_size("16777215T"), Ok(16_777_215 << 40));
        assert!(
            parse_size("16777216T").is_err(),
            "2^64 exactly is too large"
        );
    }

    /// GNU `chmod MODE` on a file of mode 0 under umask 0 is `install -m MODE`'s evaluation.
    /// `None` when GNU chmod is not available (not GNU coreutils).
    fn gnu_chmod(mode: &str) -> Option<Option<u32>> {
        use std::os::unix::fs::PermissionsExt;
        use std::process::Command;
        let v = Command::new("chmod").arg("--version").output().ok()?;
        if !String::from_utf8_lossy(&v.stdout).contains("GNU coreutils") {
            return None;
        }
        let dir = std::env::temp_dir().join(format!("atomwrite-parse-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let f = dir.join(format!("f{}", rand_suffix()));
        std::fs::write(&f, b"").ok()?;
        let st = Command::new("sh")
            .arg("-c")
            .arg(r#"umask 0 && chmod 0 "$1" && chmod -- "$2" "$1" 2>/dev/null"#)
            .arg("sh")
            .arg(&f)
            .arg(mode)
            .status()
            .ok()?;
        let got = std::fs::metadata(&f).ok()?.permissions().mode() & MODE_BITS;
        let _ = std::fs::remove_file(&f);
        Some(st.success().then_some(got))
    }

    fn rand_suffix() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(0);
        h.finish()
    }

    fn require_gnu_chmod() -> bool {
        if gnu_chmod("0").is_some() {
            return true;
        }
        assert!(
            std::env::var_os("CI").is_none_or(|v| v != "true") || !cfg!(target_os = "linux"),
            "GNU chmod is required on Linux CI for the differential mode tests"
        );
        eprintln!("skipping: GNU chmod (coreutils) not found");
        false
    }

    #[test]
    fn symbolic_modes_agree_with_gnu_chmod_on_a_table() {
        if !require_gnu_chmod() {
            return;
        }
        for m in [
            "u=rw,go=r",
            "a+x",
            "u+s",
            "g-w",
            "=r",
            "u+x,a+X",
            "go=u",
            "u=rwx,g=u-w,o=g-x",
            "+t",
            "u+t",
            "a=rwxst",
            "=644",
            "u=644",
            "+8",
            "u=rw,",
            "ugo",
            "a-",
            "=s",
            "g+s",
        ] {
            let ours = parse_mode(m).ok();
            assert_eq!(ours, gnu_chmod(m).unwrap(), "{m}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Differential test against GNU chmod (the reference implementation of the grammar).
        #[test]
        fn symbolic_modes_agree_with_gnu_chmod(m in "([ugoa]{0,2}([-+=]([rwxXst]{0,3}|[ugo]|[0-7]{1,4})){1,2},){0,2}[ugoa]{0,2}[-+=][rwxXstugo0-7]{0,3}") {
            if require_gnu_chmod() {
                let ours = parse_mode(&m).ok();
                prop_assert_eq!(ours, gnu_chmod(&m).unwrap(), "{}", m);
            }
        }
    }

    proptest! {
        #[test]
        fn parse_mode_never_panics_and_stays_within_7777(s in "\\PC{0,12}") {
            if let Ok(m) = parse_mode(&s) {
                prop_assert!(m <= MODE_BITS);
            }
        }

        #[test]
        fn symbolic_grammar_never_panics(s in "[ugoa+=,rwxXst0-9-]{0,16}") {
            if let Ok(m) = parse_mode(&s) {
                prop_assert!(m <= MODE_BITS);
            }
        }

        #[test]
        fn octal_modes_round_trip(m in 0u32..=0o7777) {
            prop_assert_eq!(parse_mode(&format!("{m:o}")), Ok(m));
            prop_assert_eq!(parse_mode(&format!("0{m:04o}")), Ok(m));
            prop_assert_eq!(parse_mode(&format!("0o{m:o}")), Ok(m));
        }

        #[test]
        fn parse_duration_never_panics(s in "\\PC{0,16}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn bare_seconds_are_exact(n: u64) {
            prop_assert_eq!(parse_duration(&n.to_string()), Ok(Duration::from_secs(n)));
        }

        #[test]
        fn parse_size_never_panics(s in "\\PC{0,24}") {
            let _ = parse_size(&s);
        }

        #[test]
        fn integer_sizes_are_exact(n: u64, unit in proptest::sample::select(vec![
            ("", 1u128), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30), ("T", 1 << 40),
            ("KB", 1000), ("MB", 1_000_000), ("GB", 1_000_000_000), ("TB", 1_000_000_000_000),
        ])) {
            let want = u64::try_from(u128::from(n) * unit.1).ok();
            prop_assert_eq!(parse_size(&format!("{n}{}", unit.0)).ok(), want);
        }
    }
}
