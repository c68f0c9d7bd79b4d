//! Plugins: executables that serve gRPC, started by the daemon and announced by a handshake line
//! on their stdout (`tend.v1.LoaderService`).
//!
//! - `handshake`: the line's dialects parsed, versions checked (pure);
//! - `error`: `LoadError`, one variant per way a Load fails, and its gRPC codes;
//! - `spec`: what to load;
//! - `launch`: one run, from the binary to SERVING (socket dir, spawn, handshake, dial, health);
//! - `dial`: the gRPC client side (channel, health, Info, reflection, shutdown calls);
//! - `registry`: `Loader`, the table, and each plugin's driver (exits, restarts, Unload);
//! - `store`: where plugins are found by package and version, and installed from.
pub mod dial;
pub mod error;
pub mod handshake;
pub mod launch;
pub mod registry;
pub mod spec;
pub mod store;

pub use registry::{
    Event, EventKind, Info, Loader, Plugin, State, Status, UnloadStage, OWNER_TAG,
    PLUGIN_TOKEN_PREFIX,
};
pub use spec::PluginSpec;
