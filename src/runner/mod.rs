//! Environments that processes run in (native, Docker, Nix), what this host can run, and the
//! runner's housekeeping (the sweep of containers a dead daemon left, free ports).
pub mod caps;
pub mod docker;
pub mod nix;
pub mod ports;
pub mod progress;
pub mod registry;
