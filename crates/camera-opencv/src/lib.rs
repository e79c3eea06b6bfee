//! The OpenCV `VideoCapture` camera backend. A placeholder until the OpenCV backend issue fills
//! it in; it is kept outside `default-members` so that a bare `cargo build` never needs OpenCV.
