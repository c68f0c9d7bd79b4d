//! Plugins: executables that serve gRPC, started by the daemon and announced by a handshake line
//! on their stdout (`tend.v1.LoaderService`). So far the handshake's parsing and the load errors.
pub mod error;
pub mod handshake;
