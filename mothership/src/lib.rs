//! The mothership: Colony's cron-safe control plane.
//!
//! A tick observes Postgres and the launcher backend, probes the channels
//! that are due, asks the pure planner (the `colony-planner` crate, in
//! `mothership/planner/`) what to do, saves the plan, and hands it to the
//! [`executor`], which carries it out through a [`launcher::Launcher`].
//! Everything here is the thin layer of I/O around that planner.
//!
//! Start reading here: [`tick`] (one pass), then [`executor`]. Beside them:
//! [`channels`] writes the `channels` table and [`views`] reads what the CLI
//! and the dashboard show; [`platform_api`] asks Twitch, YouTube and Kick;
//! [`web`] is the dashboard, [`webhook`] and [`delivery`] the webhooks,
//! [`roles`] the database roles, and [`up`] the embedded quickstart.

pub mod admin;
pub mod backfill;
pub mod channels;
pub mod counters;
pub mod delivery;
pub mod executor;
pub mod launcher;
pub mod migrate;
pub mod observe;
pub mod pgcluster;
pub mod platform_api;
pub mod policy_args;
pub mod probe;
pub mod roles;
pub mod setup;
pub mod show;
pub mod tick;
pub mod up;
pub mod views;
pub mod web;
pub mod webhook;

pub use colony_planner as planner;
pub use colony_planner::model;
