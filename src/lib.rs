//! tend: a daemon that runs and tends processes and PTY sessions for other programs, over gRPC.
pub mod agent;
pub mod cli;
pub mod config;
pub mod error;
pub mod loader;
pub mod pb;
pub mod runner;
pub mod server;
pub mod service;
pub mod supervisor;
