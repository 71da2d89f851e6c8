//! What `up` needs on the machine: PostgreSQL's server programs and ffmpeg
//! (for the demo), installed with apt-get when allowed and missing.

use crate::pgcluster::PgTools;
use anyhow::{Context, bail};
use colony::exit::Exit;

use super::say;

pub(super) struct Tools {
    pub pg: PgTools,
    pub ffmpeg: bool,
}

impl Tools {
    pub async fn find_or_install(may_install: bool, need_ffmpeg: bool) -> anyhow::Result<Self> {
        let mut missing = Vec::new();
        if PgTools::find().is_err() {
            missing.push("postgresql");
        }
        let ffmpeg = which("ffmpeg");
        if !ffmpeg {
            missing.push("ffmpeg");
        }
        if !missing.is_empty() {
            let root = nix::unistd::Uid::effective().is_root();
            if !(may_install && root && which("apt-get")) {
                let list = missing.join(" ");
                return Err(Exit::config(format!(
                    "missing Debian package(s): {list}; install them with `sudo apt-get install {list}` \
                     (or run `mothership up` as root to let it do so)"
                ))
                .into());
            }
            say(format!("installing {} with apt-get (needed once)", missing.join(", ")));
            for args in
                [vec!["update", "-q"], [&["install", "-y", "-q", "--no-install-recommends"][..], &missing].concat()]
            {
                let status = tokio::process::Command::new("apt-get")
                    .args(&args)
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .status()
                    .await
                    .context("running apt-get")?;
                if !status.success() {
                    bail!("apt-get {} failed ({status})", args.join(" "));
                }
            }
        }
        let pg = PgTools::find().context("PostgreSQL's initdb is still missing after installing postgresql")?;
        let ffmpeg = which("ffmpeg");
        if need_ffmpeg && !ffmpeg {
            bail!("ffmpeg is still missing after installing it");
        }
        Ok(Self { pg, ffmpeg })
    }
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
}
