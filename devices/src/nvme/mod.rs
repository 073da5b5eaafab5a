//! NVMe I/O passthrough: a namespace's generic character device (`/dev/ngXnY`, Linux
//! 5.13+) takes NVMe commands straight to the controller's queue through io_uring's
//! URING_CMD (Linux 5.19+), with no block layer in between. [`Namespace`] learns what the
//! namespace is (Identify) when the disk is opened; [`command`] builds the I/O commands a
//! virtio-blk request becomes and says what their completion status means.

pub(crate) mod command;
mod namespace;

pub use namespace::{flush_namespace, is_passthrough_path, Namespace, NamespaceError};
