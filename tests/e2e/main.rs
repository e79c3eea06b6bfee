//! End-to-end tests: real `edgecam` servers on loopback sockets, against the synthetic camera.
//! One test binary, a module per area (declared by `crates/edgecam`'s manifest).

#![allow(clippy::unwrap_used)]

mod cli;
mod fanout;
mod legacy;
#[cfg(feature = "opencv")]
mod opencv;
mod protocol;
mod record;
mod support;
mod view;
