//! Library writer for the torture harness: writes successive self-describing versions of
//! `DIR/f0 .. DIR/f{K-1}` through the atomwrite library until killed, printing `C <file>
//! <version>` on stdout after each commit returns.
//!
//! Usage: `torture-writer DIR K SEED MAX_LEN [portable]`
//!
//! Each version picks an API at random (one-shot `write`, streamed writes in random chunks,
//! or out-of-order writes with `seek`) and a durability level at random, so a kill lands
//! anywhere in any of these paths.

use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;

use atomwrite::{Durability, Options};
use atomwrite_torture::{HEADER_LEN, Rng, make_version, pick_len, verify};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        eprintln!("usage: torture-writer DIR K SEED MAX_LEN [portable]");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&a[1]);
    let k: u32 = a[2].parse().expect("K");
    let mut rng = Rng(a[3].parse().expect("SEED"));
    let max_len: u64 = a[4].parse().expect("MAX_LEN");
    let portable = a.get(5).is_some_and(|s| s == "portable");

    let mut versions = Vec::new();
    for i in 0..k {
        let p = dir.join(format!("f{i}"));
        let v = match std::fs::read(&p) {
            Ok(b) => match verify(&b) {
                Ok(h) => h.version,
                Err(e) => {
                    eprintln!(
                        "torture-writer: {} is not a complete version: {e}",
                        p.display()
                    );
                    std::process::exit(3);
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => panic!("read {}: {e}", p.display()),
        };
        versions.push(v);
    }
    let mut out = std::io::stdout().lock();
    loop {
        let i = rng.below(k as u64) as usize;
        let v = versions[i] + 1;
        let len = pick_len(&mut rng, max_len);
        let bytes = make_version(i as u32, v, len, rng.next_u64());
        let durability = match rng.below(3) {
            0 => Durability::Full,
            1 => Durability::Integrity,
            _ => Durability::None,
        };
        let opts = Options::new().durability(durability).portable(portable);
        let path = dir.join(format!("f{i}"));
        let r = match rng.below(3) {
            0 => opts.write(&path, &bytes).map(|_| ()),
            1 => (|| {
                let mut f = opts.open(&path)?;
                let mut off = 0;
                while off < bytes.len() {
                    let n = (1 + rng.below(64 * 1024) as usize).min(bytes.len() - off);
                    f.write_all_bytes(&bytes[off..off + n])?;
                    off += n;
                }
                f.commit().map(|_| ())
            })(),
            _ => (|| {
                let mut f = opts.open(&path)?;
                f.seek(SeekFrom::Start(HEADER_LEN as u64))
                    .map_err(std::io::Error::other)
                    .map_err(|e| atomwrite::Error::new(atomwrite::Op::Seek, &path, e))?;
                f.write_all_bytes(&bytes[HEADER_LEN..])?;
                f.seek(SeekFrom::Start(0))
                    .map_err(|e| atomwrite::Error::new(atomwrite::Op::Seek, &path, e))?;
                f.write_all_bytes(&bytes[..HEADER_LEN])?;
                f.commit().map(|_| ())
            })(),
        };
        if let Err(e) = r {
            eprintln!("torture-writer: {e}");
            std::process::exit(1);
        }
        versions[i] = v;
        // Reported only after commit returned: the harness may then rely on it.
        if writeln!(out, "C {i} {v}")
            .and_then(|_| out.flush())
            .is_err()
        {
            std::process::exit(0);
        }
    }
}
