//! The generated gRPC code of `proto/tend/v1`, and its descriptor set for server reflection.
#![allow(clippy::all, missing_docs)]

tonic::include_proto!("tend.v1");

/// Encoded `FileDescriptorSet` of every tend proto, served by reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tend_descriptor");
