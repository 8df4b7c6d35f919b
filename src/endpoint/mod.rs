//! The `http` protocol's far side: driveshaft's endpoints. A job is POSTed
//! to the worker file's `url`; the answer completes or fails it.
//!
//! Not to be confused with the driver's HTTP listener (metrics, status API):
//! nothing here serves requests, it only sends them.
//!
//! - [`wire`]: the request body and the meaning of an answer (pure).
//! - [`client`]: the pooled keep-alive client and what counts as unreachable.

pub mod client;
pub mod wire;

pub use client::{EndpointClient, Unreachable};
pub use wire::{JobFields, Outcome};
