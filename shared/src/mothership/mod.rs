//! The mothership: Colony's cron-safe control plane.
//!
//! A tick observes Postgres and the launcher backend, probes the channels
//! that are due, asks the pure [`planner`] what to do, saves the plan, and
//! carries it out through a [`launcher::Launcher`]. The planner and its
//! input types ([`model`], [`policy`]) do no I/O; everything else is the
//! thin layer around them.

pub mod admin;
pub mod launcher;
pub mod model;
pub mod observe;
pub mod planner;
pub mod policy;
pub mod probe;
pub mod tick;
