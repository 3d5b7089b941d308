//! `Destination` from async code: the object backend runs its own runtime, so an async caller
//! hands the call to tokio's blocking pool (`spawn_blocking`), as the README shows. This proves
//! that works (no nested-runtime panic) on a multi-threaded runtime and on a current-thread one.

use atomwrite::destination::{self, PublishInput};
use atomwrite::{Options, Publisher};

async fn write_and_publish(url: &'static str) {
    let r = tokio::task::spawn_blocking(move || {
        let dst = destination::open(url)?;
        let r = dst.write(&mut &b"a,b\n1,2\n"[..], &Options::new())?;
        let p = dst.publish(
            PublishInput::Reader(&mut &b"a,b\n3,4\n"[..]),
            &Publisher::new(),
        )?;
        Ok::<_, atomwrite::Error>((r, p, dst.latest()?))
    })
    .await
    .expect("the blocking task did not panic")
    .expect("write and publish succeed");
    let (receipt, published, latest) = r;
    assert_eq!(receipt.size, 8);
    assert_eq!(latest.map(|v| v.version), Some(published.version));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_in_spawn_blocking_multi_thread() {
    write_and_publish("memory:///async/multi/report.csv").await;
}

#[tokio::test(flavor = "current_thread")]
async fn destination_in_spawn_blocking_current_thread() {
    write_and_publish("memory:///async/current/report.csv").await;
}
