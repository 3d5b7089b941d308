//! The README's "From Rust: one interface for paths and URLs" example, compiled by `cargo test`
//! so it cannot rot (run it with `cargo run -p atomwrite --features aws --example destination`).

use atomwrite::destination::{self, PublishInput};
use atomwrite::{Options, Publisher};

fn main() -> Result<(), atomwrite::Error> {
    let report = b"a,b\n1,2\n";
    for place in ["/data/out/report.csv", "s3://lake/daily/report.csv"] {
        let dst = destination::open(place)?;
        let r = dst.write(&mut &report[..], &Options::new())?;
        println!("{}: {} bytes, sha256 {:?}", dst.display(), r.size, r.sha256);
        // A new version; `expect` makes the pointer move a compare-and-swap.
        let model = destination::open(format!("{place}.model"))?;
        match model.publish(
            PublishInput::Reader(&mut &b"weights"[..]),
            &Publisher::new().expect(41),
        ) {
            Ok(p) => println!("published v{}", p.version),
            Err(e) if e.is_conflict() => eprintln!("someone published first; nothing overwritten"),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
