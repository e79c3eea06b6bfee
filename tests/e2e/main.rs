//! End-to-end tests: real `edgecam` servers on loopback sockets, against the synthetic camera
//! and `exec:`/`pipe:` cameras fed by real programs, and the V4L2 camera over its simulated
//! device.
//! One test binary, a module per area (declared by `crates/edgecam`'s manifest).

#![allow(clippy::unwrap_used)]

mod access;
mod browser;
mod cli;
mod clock;
mod fanout;
mod hostile;
mod http;
mod http_client;
mod legacy;
#[cfg(feature = "opencv")]
mod opencv;
mod passwd;
mod pipe;
mod protocol;
mod record;
mod relay;
mod support;
mod tls;
mod v4l2;
mod view;
