//! The MADT: a local x2APIC per vCPU, KVM's in-kernel IOAPIC, how ISA IRQs reach it and
//! where NMIs come in. `acpi_tables` carries the table and the IOAPIC structure; the
//! x86 structures it lacks (local x2APIC, interrupt source override, local x2APIC NMI)
//! are laid out here as ACPI 6.5, 5.2.12 defines them.

use acpi_tables::madt::{IoApic, LocalInterruptController, MADT};
use acpi_tables::{Aml, AmlSink};
use zerocopy::byteorder::{LE, U16, U32};
use zerocopy::{Immutable, IntoBytes};

use crate::layout::{IOAPIC_ADDR, LAPIC_ADDR};

/// APIC IDs are the vCPU indices. Without interrupt remapping an IOAPIC route names its
/// destination in 8 bits, and 0xFF is the xAPIC broadcast ID: Linux brings up CPUs with
/// APIC IDs 0..=254 only.
pub const MAX_VCPUS: u8 = 254;

const ENABLED: u32 = 1;
/// The IOAPIC's ID: IOAPIC IDs are a namespace of their own since the xAPIC.
const IOAPIC_ID: u8 = 0;
/// "All processors", in a local x2APIC NMI structure.
const ALL_PROCESSORS: u32 = 0xffff_ffff;
/// MPS INTI flags: polarity and trigger mode "conforming to the bus", for ISA that is
/// active high and edge-triggered.
const INTI_CONFORMING: u16 = 0;
/// LINT1 carries NMIs, as on every PC.
const NMI_LINT: u8 = 1;
const ISA_BUS: u8 = 0;

const TYPE_INTERRUPT_SOURCE_OVERRIDE: u8 = 2;
const TYPE_LOCAL_X2APIC: u8 = 9;
const TYPE_LOCAL_X2APIC_NMI: u8 = 10;

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, IntoBytes, Immutable)]
struct LocalX2Apic {
    r#type: u8,
    length: u8,
    _reserved: U16<LE>,
    x2apic_id: U32<LE>,
    flags: U32<LE>,
    processor_uid: U32<LE>,
}

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, IntoBytes, Immutable)]
struct InterruptSourceOverride {
    r#type: u8,
    length: u8,
    bus: u8,
    source: u8,
    gsi: U32<LE>,
    flags: U16<LE>,
}

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, IntoBytes, Immutable)]
struct LocalX2ApicNmi {
    r#type: u8,
    length: u8,
    flags: U16<LE>,
    processor_uid: U32<LE>,
    lint: u8,
    _reserved: [u8; 3],
}

macro_rules! structure_as_aml {
    ($($ty:ty),*) => {$(
        impl Aml for $ty {
            fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
                sink.vec(self.as_bytes());
            }
        }
    )*};
}
structure_as_aml!(LocalX2Apic, InterruptSourceOverride, LocalX2ApicNmi);

/// Builds the MADT for `cpus` vCPUs (APIC IDs and processor UIDs 0..cpus). Its flags
/// stay 0, no PCAT_COMPAT: a hardware-reduced guest does not use the 8259s.
pub(super) fn build_madt(cpus: u8, oem_id: [u8; 6], table_id: [u8; 8], revision: u32) -> MADT {
    let mut madt = MADT::new(
        oem_id,
        table_id,
        revision,
        LocalInterruptController::Address(LAPIC_ADDR),
    );
    for index in 0..u32::from(cpus) {
        madt.add_structure(LocalX2Apic {
            r#type: TYPE_LOCAL_X2APIC,
            length: 16,
            _reserved: 0.into(),
            x2apic_id: index.into(),
            flags: ENABLED.into(),
            processor_uid: index.into(),
        });
    }
    madt.add_structure(IoApic::new(IOAPIC_ID, IOAPIC_ADDR, 0));
    // KVM routes ISA IRQ n to IOAPIC pin n, the PIT's IRQ 0 included (not to pin 2, as
    // PC firmware usually declares): say so, or Linux would assume the common 0 -> 2.
    madt.add_structure(InterruptSourceOverride {
        r#type: TYPE_INTERRUPT_SOURCE_OVERRIDE,
        length: 10,
        bus: ISA_BUS,
        source: 0,
        gsi: 0.into(),
        flags: INTI_CONFORMING.into(),
    });
    madt.add_structure(LocalX2ApicNmi {
        r#type: TYPE_LOCAL_X2APIC_NMI,
        length: 12,
        flags: INTI_CONFORMING.into(),
        processor_uid: ALL_PROCESSORS.into(),
        lint: NMI_LINT,
        _reserved: [0; 3],
    });
    madt
}
