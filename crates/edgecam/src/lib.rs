//! edgecam
