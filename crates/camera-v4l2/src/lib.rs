//! edgecam's native V4L2 camera (stub while it is being written).

mod abi;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod layout_check;
