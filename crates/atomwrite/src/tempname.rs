//! Temporary names: `.{name}.{16 random chars}.tmp`, bounded by the filesystem's NAME_MAX.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Length of the random part.
pub(crate) const RANDOM_LEN: usize = 16;
const SUFFIX: &[u8] = b".tmp";
/// Bytes a temp name adds to the destination name: "." + "." + random + ".tmp".
pub(crate) const OVERHEAD: usize = 2 + RANDOM_LEN + SUFFIX.len();
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

thread_local! {
    /// This thread's name generator: a SipHash-1-3 key std draws from the kernel's CSPRNG once
    /// per thread, a counter, and a salt that [`collided`] replaces with fresh random bits.
    static KEYED: (
        std::collections::hash_map::RandomState,
        std::cell::Cell<u64>,
        std::cell::Cell<u64>,
    ) = (
        std::collections::hash_map::RandomState::new(),
        std::cell::Cell::new(0),
        std::cell::Cell::new(0),
    );
}

/// 16 characters (80 bits) that cannot be predicted: SipHash-1-3 (a keyed PRF) of a counter and
/// a salt, under a key std draws from the kernel's CSPRNG once per thread. Unpredictable without
/// the key, like `getrandom` output, but without a syscall per name.
///
/// A forked child starts with its parent's key, counter and salt, so it would make the very
/// names its parent makes next. No name is ever used without `O_EXCL` (or `linkat`/`mkdirat`,
/// which fail on an existing name too), so a repeat is an `EEXIST`, never a shared temp: the
/// loops that retry on `EEXIST` call [`collided`], which gives this thread a fresh salt, so
/// after its first collision a child's names have nothing in common with its parent's. This
/// replaces the pid the names used to mix in, which cost a `getpid` syscall per name.
pub(crate) fn random_token() -> [u8; RANDOM_LEN] {
    use std::hash::{BuildHasher, Hasher};
    let (a, b) = KEYED.with(|(key, counter, salt)| {
        let n = counter.get();
        counter.set(n.wrapping_add(2));
        let salt = salt.get();
        let word = |i: u64| {
            let mut h = key.build_hasher();
            h.write_u64(i);
            h.write_u64(salt);
            h.finish()
        };
        (word(n), word(n + 1))
    });
    let mut out = [0u8; RANDOM_LEN];
    for (i, c) in out.iter_mut().enumerate() {
        let bits = if i < 12 {
            a >> (5 * i)
        } else {
            b >> (5 * (i - 12))
        };
        *c = ALPHABET[(bits & 31) as usize];
    }
    out
}

/// Called by a loop that got `EEXIST` for a name from [`temp_name`]: the next names of this
/// thread come from a fresh random salt (one `getrandom`), so a forked child that shares its
/// parent's generator stops repeating its parent's names after one collision (see
/// [`random_token`]).
pub(crate) fn collided() {
    let mut b = [0u8; 8];
    fill_random(&mut b);
    KEYED.with(|(_, _, salt)| salt.set(u64::from_ne_bytes(b)));
}

pub(crate) fn fill_random(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => {
                // getrandom(2) cannot fail on Linux >= 3.17 once the pool is initialised;
                // fall back to /dev/urandom for exotic systems.
                use std::io::Read;
                let mut f = std::fs::File::open("/dev/urandom").expect("no source of randomness");
                f.read_exact(&mut buf[filled..])
                    .expect("no source of randomness");
                return;
            }
        }
    }
}

/// A temp name for `dest_name` that fits in `name_max` bytes: the embedded copy of the
/// destination name is shortened (on a UTF-8 boundary when the name is UTF-8), never the
/// random part, so a 255-byte destination name still gets a unique hidden temp.
pub(crate) fn temp_name(dest_name: &OsStr, name_max: usize) -> OsString {
    let embedded = embedded_for(dest_name, name_max);
    let mut out = Vec::with_capacity(embedded.len() + OVERHEAD);
    out.push(b'.');
    out.extend_from_slice(embedded);
    out.push(b'.');
    out.extend_from_slice(&random_token());
    out.extend_from_slice(SUFFIX);
    OsString::from_vec(out)
}

/// The part of `dest_name` that [`temp_name`] embeds for a filesystem with this `name_max`.
pub(crate) fn embedded_for(dest_name: &OsStr, name_max: usize) -> &[u8] {
    let bytes = dest_name.as_bytes();
    let room = name_max.saturating_sub(OVERHEAD);
    let mut keep = bytes.len().min(room);
    if let Ok(s) = std::str::from_utf8(bytes) {
        while keep > 0 && !s.is_char_boundary(keep) {
            keep -= 1;
        }
    }
    &bytes[..keep]
}

/// The destination name embedded in a temp name (`out.json` in `.out.json.abc…xyz.tmp`), or
/// `None` if `name` is not a temp name. Matching a destination's temps by this exact name (not by
/// prefix) keeps `a`'s leftovers apart from `a.b`'s.
pub(crate) fn embedded_name(name: &OsStr) -> Option<&[u8]> {
    if !is_temp_name(name) {
        return None;
    }
    let b = name.as_bytes();
    Some(&b[1..b.len() - SUFFIX.len() - RANDOM_LEN - 1])
}

/// Whether `name` is a temp name made by [`temp_name`] for exactly `dest_name` on a filesystem
/// with this `name_max` (a temp of `a.b` is not a temp of `a`).
pub(crate) fn is_temp_of(name: &OsStr, dest_name: &OsStr, name_max: usize) -> bool {
    embedded_name(name).is_some_and(|e| e == embedded_for(dest_name, name_max))
}

/// Whether `name` has the shape of one of our temporary names.
pub fn is_temp_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    if b.len() < OVERHEAD || b[0] != b'.' || !b.ends_with(SUFFIX) {
        return false;
    }
    let rand_end = b.len() - SUFFIX.len();
    let rand_start = rand_end - RANDOM_LEN;
    b[rand_start - 1] == b'.' && b[rand_start..rand_end].iter().all(|c| ALPHABET.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn temp_name_of_255_byte_name_fits_name_max() {
        let name = "x".repeat(255);
        let t = temp_name(OsStr::new(&name), 255);
        assert_eq!(t.len(), 255);
        assert!(is_temp_name(&t));
    }

    #[test]
    fn short_names_are_embedded_whole() {
        let t = temp_name(OsStr::new("out.json"), 255);
        let s = t.to_str().unwrap();
        assert!(s.starts_with(".out.json."), "{s}");
        assert!(s.ends_with(".tmp"));
        assert!(is_temp_name(&t));
    }

    #[test]
    fn utf8_names_are_cut_on_a_char_boundary() {
        let name = "é".repeat(127); // 254 bytes
        let t = temp_name(OsStr::new(&name), 255);
        assert!(t.to_str().is_some(), "cut inside a UTF-8 sequence");
        assert!(t.len() <= 255);
    }

    #[test]
    fn ordinary_names_are_not_temp_names() {
        for n in [
            "out.tmp",
            ".out.tmp",
            "a.b.c",
            ".x.ABCDEFGHIJKLMNOP.tmp",
            ".x.abc.tmp",
        ] {
            assert!(!is_temp_name(OsStr::new(n)), "{n}");
        }
    }

    #[test]
    fn temps_of_a_are_not_temps_of_a_b() {
        let t = temp_name(OsStr::new("a.b"), 255);
        assert!(is_temp_of(&t, OsStr::new("a.b"), 255));
        assert!(!is_temp_of(&t, OsStr::new("a"), 255));
        let long = "x".repeat(255);
        let t = temp_name(OsStr::new(&long), 255);
        assert!(is_temp_of(&t, OsStr::new(&long), 255));
    }

    #[test]
    fn a_collision_gives_the_thread_fresh_names() {
        // A forked child has its parent's key, counter and salt: rewinding the counter
        // reproduces that state here. Without `collided` the names repeat; after it, not.
        let rewind = || KEYED.with(|(_, counter, _)| counter.set(counter.get().wrapping_sub(2)));
        let a = random_token();
        rewind();
        assert_eq!(random_token(), a, "same key, counter and salt: same name");
        rewind();
        collided();
        assert_ne!(random_token(), a);
    }

    #[test]
    fn two_names_differ() {
        let a = temp_name(OsStr::new("f"), 255);
        let b = temp_name(OsStr::new("f"), 255);
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn any_name_any_limit_fits_and_is_recognised(name in proptest::collection::vec(1u8..=255, 1..300), max in 22usize..300) {
            let name: Vec<u8> = name.into_iter().map(|c| if c == b'/' { b'_' } else { c }).collect();
            let t = temp_name(OsStr::from_bytes(&name), max);
            prop_assert!(t.len() <= max.max(OVERHEAD));
            prop_assert!(is_temp_name(&t));
        }
    }
}
