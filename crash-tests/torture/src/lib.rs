//! Self-describing file versions for crash and concurrency testing of atomwrite.
//!
//! A version is `HEADER || payload`. The header holds a magic, the file id, the version number,
//! the payload length, a seed and the sha256 of the payload; the payload is generated from
//! `(file id, version, seed)`, so any file read back can be checked *byte for byte* against the
//! one complete version it claims to be. A prefix, a mix of two versions, an empty file or a
//! file with trailing garbage never verifies.

use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::path::Path;

/// Magic bytes at the start of every version.
pub const MAGIC: &[u8; 8] = b"AWTORT01";
/// Header length in bytes: magic, file id (u32), version (u64), length (u64), seed (u64), sha256.
pub const HEADER_LEN: usize = 8 + 4 + 8 + 8 + 8 + 32;

/// What a header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Which logical file this is a version of.
    pub file_id: u32,
    /// The version number (1 is the first).
    pub version: u64,
    /// Payload length in bytes.
    pub len: u64,
    /// Seed of the payload generator.
    pub seed: u64,
}

/// SplitMix64: a small, fast, deterministic generator (payloads and test randomness).
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// A generator seeded from the kernel's CSPRNG.
    pub fn from_entropy() -> Rng {
        let mut b = [0u8; 8];
        let _ = rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty());
        Rng(u64::from_le_bytes(b) ^ (std::process::id() as u64) << 32)
    }
}

/// A payload length drawn from a mix of small, medium and large sizes, capped at `max`.
pub fn pick_len(rng: &mut Rng, max: u64) -> u64 {
    let l = match rng.below(10) {
        0 => 0,
        1..=4 => rng.below(4096),
        5..=8 => 4096 + rng.below(128 * 1024),
        _ => 128 * 1024 + rng.below(2 * 1024 * 1024),
    };
    l.min(max)
}

fn fill_payload(file_id: u32, version: u64, seed: u64, out: &mut [u8]) {
    let mut r = Rng(seed ^ ((file_id as u64) << 40) ^ version.wrapping_mul(0x2545_f491_4f6c_dd1d));
    for chunk in out.chunks_mut(8) {
        let v = r.next_u64().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// The complete bytes of version `version` of file `file_id` with a payload of `len` bytes.
pub fn make_version(file_id: u32, version: u64, len: u64, seed: u64) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN + len as usize];
    fill_payload(file_id, version, seed, &mut out[HEADER_LEN..]);
    let digest = Sha256::digest(&out[HEADER_LEN..]);
    out[..8].copy_from_slice(MAGIC);
    out[8..12].copy_from_slice(&file_id.to_le_bytes());
    out[12..20].copy_from_slice(&version.to_le_bytes());
    out[20..28].copy_from_slice(&len.to_le_bytes());
    out[28..36].copy_from_slice(&seed.to_le_bytes());
    out[36..68].copy_from_slice(&digest);
    out
}

/// Checks that `bytes` is exactly one complete version (header consistent, length exact,
/// checksum right, payload equal to the regenerated one). Returns its header, or why not.
pub fn verify(bytes: &[u8]) -> Result<Header, String> {
    if bytes.is_empty() {
        return Err("empty file".into());
    }
    if bytes.len() < HEADER_LEN {
        return Err(format!("{} bytes: shorter than a header", bytes.len()));
    }
    if &bytes[..8] != MAGIC {
        return Err("bad magic".into());
    }
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let h = Header {
        file_id: u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        version: u64_at(12),
        len: u64_at(20),
        seed: u64_at(28),
    };
    let want = HEADER_LEN as u64 + h.len;
    if bytes.len() as u64 != want {
        return Err(format!(
            "length {} but version {} of file {} has {want} bytes (prefix or garbage)",
            bytes.len(),
            h.version,
            h.file_id
        ));
    }
    if Sha256::digest(&bytes[HEADER_LEN..]).as_slice() != &bytes[36..68] {
        return Err(format!(
            "checksum mismatch for version {} of file {} (mixed or torn contents)",
            h.version, h.file_id
        ));
    }
    if make_version(h.file_id, h.version, h.len, h.seed) != bytes {
        return Err(format!(
            "not byte-equal to version {} of file {}",
            h.version, h.file_id
        ));
    }
    Ok(h)
}

/// Names in `dir` that look like atomwrite temporary files.
pub fn temps_in(dir: &Path) -> std::io::Result<Vec<OsString>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let n = e?.file_name();
        if atomwrite::is_temp_name(&n) {
            v.push(n);
        }
    }
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_verify_and_damage_is_detected() {
        let mut rng = Rng(7);
        for v in 1..50u64 {
            let len = pick_len(&mut rng, 300_000);
            let b = make_version(3, v, len, rng.next_u64());
            let h = verify(&b).unwrap();
            assert_eq!((h.file_id, h.version, h.len), (3, v, len));
            if !b.is_empty() {
                assert!(verify(&b[..b.len() - 1]).is_err(), "prefix accepted");
            }
            let mut extra = b.clone();
            extra.push(0);
            assert!(verify(&extra).is_err(), "trailing byte accepted");
            if len > 0 {
                let mut flip = b.clone();
                let i = HEADER_LEN + (rng.below(len) as usize);
                flip[i] ^= 1;
                assert!(verify(&flip).is_err(), "flipped byte accepted");
            }
        }
        assert!(verify(b"").is_err());
    }

    #[test]
    fn a_mix_of_two_versions_is_rejected() {
        let a = make_version(1, 1, 10_000, 1);
        let b = make_version(1, 2, 10_000, 2);
        let mut mix = a[..5000].to_vec();
        mix.extend_from_slice(&b[5000..]);
        assert!(verify(&mix).is_err());
    }
}
