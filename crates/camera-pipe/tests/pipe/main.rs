//! End-to-end tests of the pipe cameras against real processes, FIFOs and files. One binary
//! with modules; every wait has a deadline.

#![allow(clippy::unwrap_used)]

mod exec;
mod ffmpeg;
mod files;
mod lifecycle;
mod stdin;
mod support;
