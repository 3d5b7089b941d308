//! Self-describing file versions.
//!
//! Every version the guest writes is `HEADER || BODY`:
//!
//! | offset | size | field                                   |
//! |-------:|-----:|-----------------------------------------|
//! | 0      | 8    | magic `AWVMv001`                        |
//! | 8      | 8    | version number, little endian           |
//! | 16     | 8    | total file length (header + body), LE   |
//! | 24     | 8    | run seed, LE                            |
//! | 32     | 32   | SHA-256 of the body                     |
//!
//! The body is a pseudo-random stream derived from `(seed, version)`, so the
//! checker can regenerate the exact bytes a version must contain. An empty
//! file, a prefix, a file whose length does not match its header, or a file
//! that mixes blocks of two versions is therefore always detected: the
//! length, the checksum and the byte-for-byte comparison must all agree.

use sha2::{Digest, Sha256};

/// The 8 magic bytes at the start of every version.
pub const MAGIC: &[u8; 8] = b"AWVMv001";
/// Length of the fixed header.
pub const HEADER_LEN: usize = 64;

/// One step of the splitmix64 generator: small, fast and deterministic.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn body_state(seed: u64, version: u64) -> u64 {
    seed ^ version.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ 0x5555_0000_AAAA_0000
}

/// The body bytes of `version` under `seed`, `len` bytes long.
pub fn body(seed: u64, version: u64, len: usize) -> Vec<u8> {
    let mut st = body_state(seed, version);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&splitmix64(&mut st).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The complete file contents of `version`: `total_len` bytes in all
/// (at least [`HEADER_LEN`]).
pub fn encode(seed: u64, version: u64, total_len: usize) -> Vec<u8> {
    let total_len = total_len.max(HEADER_LEN);
    let body = body(seed, version, total_len - HEADER_LEN);
    let mut out = Vec::with_capacity(total_len);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(total_len as u64).to_le_bytes());
    out.extend_from_slice(&seed.to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&body));
    out.extend_from_slice(&body);
    out
}

/// What a file on disk turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// One complete version, byte for byte.
    Intact {
        /// Its version number.
        version: u64,
        /// Its length in bytes.
        len: u64,
    },
    /// Zero bytes.
    Empty,
    /// Shorter than a header.
    Short {
        /// Bytes found.
        len: u64,
    },
    /// The first 8 bytes are not the magic (garbage, zeros, another file).
    BadMagic,
    /// The header was written by a different run.
    WrongSeed {
        /// Seed found in the header.
        found: u64,
    },
    /// The header announces a length the file does not have (prefix, or
    /// extra bytes from another version).
    LengthMismatch {
        /// Version in the header.
        version: u64,
        /// Length announced by the header.
        expected: u64,
        /// Length found.
        actual: u64,
    },
    /// The body differs from what the version must contain (mixed or torn).
    BodyMismatch {
        /// Version in the header.
        version: u64,
        /// First differing byte offset in the file.
        offset: u64,
    },
    /// The body is right but the stored checksum is not.
    ChecksumMismatch {
        /// Version in the header.
        version: u64,
    },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Intact { version, len } => write!(f, "intact v{version} ({len} bytes)"),
            Verdict::Empty => write!(f, "empty file"),
            Verdict::Short { len } => write!(f, "short file ({len} bytes, no complete header)"),
            Verdict::BadMagic => write!(f, "bad magic (garbage or zeros)"),
            Verdict::WrongSeed { found } => write!(f, "header from another run (seed {found})"),
            Verdict::LengthMismatch {
                version,
                expected,
                actual,
            } => write!(
                f,
                "v{version} header says {expected} bytes, file has {actual} (prefix or mix)"
            ),
            Verdict::BodyMismatch { version, offset } => {
                write!(
                    f,
                    "v{version} body differs at byte {offset} (mixed or torn)"
                )
            }
            Verdict::ChecksumMismatch { version } => write!(f, "v{version} checksum mismatch"),
        }
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Classify `bytes` as written by a run with `seed`.
pub fn verify(bytes: &[u8], seed: u64) -> Verdict {
    let actual = bytes.len() as u64;
    if bytes.is_empty() {
        return Verdict::Empty;
    }
    if bytes.len() < HEADER_LEN {
        return Verdict::Short { len: actual };
    }
    if &bytes[..8] != MAGIC {
        return Verdict::BadMagic;
    }
    let version = u64_at(bytes, 8);
    let expected = u64_at(bytes, 16);
    let found_seed = u64_at(bytes, 24);
    if found_seed != seed {
        return Verdict::WrongSeed { found: found_seed };
    }
    if expected != actual {
        return Verdict::LengthMismatch {
            version,
            expected,
            actual,
        };
    }
    let want = body(seed, version, bytes.len() - HEADER_LEN);
    let got = &bytes[HEADER_LEN..];
    if let Some(i) = want.iter().zip(got).position(|(a, b)| a != b) {
        return Verdict::BodyMismatch {
            version,
            offset: (HEADER_LEN + i) as u64,
        };
    }
    if bytes[32..64] != Sha256::digest(got)[..] {
        return Verdict::ChecksumMismatch { version };
    }
    Verdict::Intact {
        version,
        len: actual,
    }
}

/// Size of version `version` for a run with `seed`: mostly small files,
/// some medium, one in ten large (4–12 MiB) so that crashes often land in
/// the middle of writeback.
pub fn size_for(seed: u64, version: u64) -> usize {
    let mut st = seed ^ version.wrapping_mul(0xA076_1D64_78BD_642F);
    let r = splitmix64(&mut st) % 100;
    let x = splitmix64(&mut st) as usize;
    match r {
        0..70 => HEADER_LEN + x % (16 << 10),
        70..90 => (16 << 10) + x % (1 << 20),
        _ => (4 << 20) + x % (8 << 20),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_version_verifies_as_intact() {
        for (v, len) in [(1u64, 64usize), (2, 65), (7, 4096), (9, 100_003)] {
            let bytes = encode(42, v, len);
            assert_eq!(bytes.len(), len);
            assert_eq!(
                verify(&bytes, 42),
                Verdict::Intact {
                    version: v,
                    len: len as u64
                }
            );
        }
    }

    #[test]
    fn empty_and_short_files_are_detected() {
        assert_eq!(verify(&[], 1), Verdict::Empty);
        let bytes = encode(1, 3, 1000);
        assert_eq!(verify(&bytes[..10], 1), Verdict::Short { len: 10 });
    }

    #[test]
    fn prefix_is_detected() {
        let bytes = encode(5, 3, 10_000);
        let v = verify(&bytes[..5000], 5);
        assert!(
            matches!(v, Verdict::LengthMismatch { version: 3, .. }),
            "{v}"
        );
    }

    #[test]
    fn zeros_are_detected() {
        assert_eq!(verify(&vec![0u8; 4096], 5), Verdict::BadMagic);
    }

    #[test]
    fn mix_of_two_versions_is_detected() {
        let mut a = encode(5, 3, 10_000);
        let b = encode(5, 4, 10_000);
        a[8192..].copy_from_slice(&b[8192..]);
        let v = verify(&a, 5);
        assert_eq!(
            v,
            Verdict::BodyMismatch {
                version: 3,
                offset: 8192
            }
        );
        // New header over an old body: caught too.
        let mut c = encode(5, 3, 10_000);
        c[..HEADER_LEN].copy_from_slice(&b[..HEADER_LEN]);
        assert!(matches!(
            verify(&c, 5),
            Verdict::BodyMismatch { version: 4, .. }
        ));
    }

    #[test]
    fn corrupted_checksum_is_detected() {
        let mut a = encode(5, 3, 1000);
        a[40] ^= 1;
        assert_eq!(verify(&a, 5), Verdict::ChecksumMismatch { version: 3 });
    }

    #[test]
    fn other_run_is_detected() {
        let a = encode(5, 3, 1000);
        assert_eq!(verify(&a, 6), Verdict::WrongSeed { found: 5 });
    }

    #[test]
    fn sizes_cover_small_and_large() {
        let sizes: Vec<usize> = (1..400).map(|v| size_for(9, v)).collect();
        assert!(sizes.iter().all(|&s| s >= HEADER_LEN));
        assert!(sizes.iter().any(|&s| s < 16 << 10));
        assert!(sizes.iter().any(|&s| s >= 4 << 20));
    }
}
