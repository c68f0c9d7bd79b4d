//! The gRPC services: thin adapters from proto requests to the core.
pub mod agent;
mod agent_convert;
pub mod convert;
pub mod limit;
pub mod loader;
mod loader_convert;
pub mod plugin;
pub mod process;
mod readiness_convert;
pub mod runner;
mod runner_convert;
mod stream;
