//! Integration tests: the real daemon binary, over its unix socket (and TCP where it matters).
mod helper;

mod agent;
mod authority;
mod callbacks;
mod cli;
mod daemon;
mod exec;
mod fault;
mod forward;
mod hints;
mod io;
mod lifecycle;
mod loader;
mod messages;
mod output;
mod plugin_mode;
mod plugins;
mod pty;
mod readiness;
mod runner;
mod stores;
mod tls;
mod usage;
mod validation;
