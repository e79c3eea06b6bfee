//! HTTP, sans-IO: the server's request-head parser, router and response framing (MJPEG as
//! `multipart/x-mixed-replace`), and the client's reader of any MJPEG server's responses.
//! Bytes in, decisions and bytes out; the connection is someone else's.

pub mod reader;
