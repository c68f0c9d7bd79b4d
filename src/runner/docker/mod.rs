//! Docker environments: a container per environment, made from an image that is found,
//! loaded from a tarball or pulled, labelled with its owning daemon; each process in it an
//! exec behind the supervisor's `Environment`; and the sweep of containers whose daemon died.
//! Only the engine's API (bollard) is used, never the docker CLI.
mod attach;
mod engine;
mod exec;
mod fifo;
mod group;
mod image;
mod settings;
mod sweep;
#[cfg(test)]
mod tests;

pub use engine::{Engine, DEFAULT_HOST, LABEL_ENVIRONMENT, LABEL_OWNER};
pub use exec::DockerEnv;
pub use fifo::remove_dir as remove_fifo_dir;
pub use settings::{DockerSettings, Mount, PortMapping};
pub use sweep::Swept;
