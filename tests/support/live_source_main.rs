//! `live-source`: the test live HLS source as a standalone server, for trying
//! recorders by hand. Prints one URL per channel and runs until killed.
//!
//!     cargo run -p colony-tests --bin live-source -- 3
//!
//! `live-source resolve BASE PAGE` stands in for `streamlink --stream-url
//! PAGE best` in tests of platform channels: it prints the HLS URL of the
//! channel PAGE names (its last path segment) on the test source at BASE.

use colony_tests::live::{Container, LiveSource, Profile, media};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("resolve") {
        let (Some(base), Some(page)) = (args.get(2), args.get(3)) else {
            eprintln!("usage: live-source resolve BASE PAGE");
            std::process::exit(2);
        };
        let name = page.trim_end_matches('/').rsplit('/').next().unwrap_or_default().trim_start_matches('@');
        let base = base.trim_end_matches('/');
        // A signed URL, as a platform hands out: the source's current token.
        let token = reqwest::get(format!("{base}/{name}/token")).await.ok().map(|r| r.text());
        let token = match token {
            Some(text) => text.await.unwrap_or_default(),
            None => String::new(),
        };
        if token.trim().is_empty() {
            println!("{base}/{name}/index.m3u8");
        } else {
            println!("{base}/{name}/index.m3u8?token={}", token.trim());
        }
        return;
    }
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
