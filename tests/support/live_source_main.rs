//! `live-source`: the test live HLS source as a standalone server, for trying
//! recorders by hand. Prints one URL per channel and runs until killed.
//!
//!     cargo run -p colony-tests --bin live-source -- 3

use colony_tests::live::{Container, LiveSource, Profile, media};

#[tokio::main]
async fn main() {
    let channels: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(1);
    let media = tokio::task::spawn_blocking(|| media(Container::Ts, Profile::TEST)).await.unwrap();
    let source = LiveSource::start().await;
    for i in 0..channels {
        let name = format!("ch{i}");
        source.add(&name, &media, 6);
        println!("{}", source.master_url(&name));
    }
    std::future::pending::<()>().await;
}
