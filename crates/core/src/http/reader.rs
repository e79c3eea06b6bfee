//! The client side: reads an MJPEG server's response (a multipart stream or a single image).
