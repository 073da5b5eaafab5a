//! The two sizes a ring's entries come in. Plain rings (64-byte SQEs, 16-byte CQEs) carry
//! every op but driver commands; a wide ring (IORING_SETUP_SQE128 | CQE32, Linux 5.19+)
//! carries those too, at twice the ring memory per entry, so a reactor is built wide only
//! when a device of the machine needs it (NVMe passthrough).

use io_uring::{cqueue, squeue};

use super::sqe::Sqe;

pub(crate) trait EntrySize: 'static {
    type Sqe: squeue::EntryMarker;
    type Cqe: cqueue::EntryMarker;

    /// `sqe` as this ring's entry; `None` when the ring cannot carry it.
    fn entry(sqe: Sqe) -> Option<Self::Sqe>;
}

/// 64-byte SQEs and 16-byte CQEs.
pub(crate) enum Plain {}

/// 128-byte SQEs and 32-byte CQEs.
pub(crate) enum Wide {}

impl EntrySize for Plain {
    type Sqe = squeue::Entry;
    type Cqe = cqueue::Entry;

    fn entry(sqe: Sqe) -> Option<squeue::Entry> {
        match sqe {
            Sqe::Plain(entry) => Some(entry),
            Sqe::Wide(_) => None,
        }
    }
}

impl EntrySize for Wide {
    type Sqe = squeue::Entry128;
    type Cqe = cqueue::Entry32;

    fn entry(sqe: Sqe) -> Option<squeue::Entry128> {
        Some(match sqe {
            Sqe::Plain(entry) => entry.into(),
            Sqe::Wide(entry) => entry,
        })
    }
}
