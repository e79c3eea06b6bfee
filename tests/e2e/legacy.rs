//! The legacy protocol against the programs it came from: the old Python client against our
//! server, and our client (library and binary) against the old Python server, both emulated
//! as LEGACY-PROTOCOL.md describes them.

mod old_client;
mod old_server;
mod our_client;
mod our_server;
