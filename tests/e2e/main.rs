//! End-to-end tests: real `edgecam` servers on loopback sockets, against the synthetic camera
//! and `exec:`/`pipe:` cameras fed by real programs.
//! One test binary, a module per area (declared by `crates/edgecam`'s manifest).

#![allow(clippy::unwrap_used)]

mod cli;
mod clock;
mod fanout;
mod hostile;
mod http_client;
mod legacy;
#[cfg(feature = "opencv")]
mod opencv;
mod pipe;
mod protocol;
mod record;
mod support;
mod view;
