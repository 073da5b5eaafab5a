//! The DSDT's AML: the devices the guest cannot find by probing, and how it powers off.
//!
//! - `\_S5_`: the sleep type the guest writes to the sleep control register to power off.
//! - `\_SB_.PCI0`: the PCI Express host bridge; its `_CRS` windows are the BAR allocator's,
//!   its `_PRT` routes each INTx pin through an interrupt link that says "edge, active
//!   high" (the devices raise INTx through an irqfd edge; a bare GSI in `_PRT` would be
//!   taken as level, active low, and a pulse during the handler would be lost).
//! - `\_SB_.GED0` and `\_SB_.PWRB`: the Generic Event Device whose interrupt is the power
//!   button, and the button itself (a control-method button, PNP0C0C).
//! - `\_SB_.COM1`, `\_SB_.RTC_`, `\_SB_.MBRD`: the 16550 and the CMOS clock, which Linux
//!   then finds with their interrupt routed, and the motherboard resources (the ECAM, the
//!   platform registers) no driver may claim.
//! - `\_SB_.Cnnn`: one processor device per vCPU, its `_UID` the MADT's.

use acpi_tables::aml::{
    AddressSpace, AddressSpaceCacheable, Device, EISAName, Interrupt, Memory32Fixed, Method, Name,
    Notify, Package, Path, ResourceTemplate, Scope, IO, ZERO,
};
use acpi_tables::Aml;

use ringvisor_devices::legacy::acpi_pm::{PM_REGISTER_COUNT, S5_SLEEP_TYPE};

use super::AcpiPlatform;
use crate::layout::{
    ACPI_PM_PORT, GED_GSI, PCI_ECAM_SIZE, PCI_ECAM_START, PCI_MMIO_END, PCI_MMIO_START,
};
use crate::pci::PciInterrupt;
use crate::pio_bus::{COM1_PORT, RTC_PORT};

/// ISA IRQ of COM1, on the IOAPIC pin of the same number.
const COM1_GSI: u32 = 4;
/// The power button's notification: "button pressed".
const NOTIFY_BUTTON_PRESSED: u8 = 0x80;

/// An edge-triggered, active-high, exclusive interrupt the device consumes.
fn edge_interrupt(gsi: u32) -> Interrupt {
    Interrupt::new(true, true, false, false, gsi)
}

/// The AML of the DSDT's body (everything after its header).
pub(super) fn dsdt_body(platform: &AcpiPlatform) -> Vec<u8> {
    let mut aml = Vec::new();
    Name::new("_S5_".into(), &Package::new(vec![&S5_SLEEP_TYPE, &ZERO])).to_aml_bytes(&mut aml);

    let links: Vec<InterruptLink> = platform
        .pci_interrupts
        .iter()
        .enumerate()
        .map(|(index, route)| InterruptLink::new(index, *route))
        .collect();
    let link_devices: Vec<Serialized> = links.iter().map(InterruptLink::device).collect();
    let host_bridge = host_bridge(&links);
    let power_button = power_button();
    let com1 = com1();
    let rtc = rtc();
    let motherboard = motherboard_resources();
    let cpus: Vec<Serialized> = (0..platform.cpus).map(processor).collect();

    let mut children: Vec<&dyn Aml> = vec![&host_bridge, &power_button, &com1, &rtc, &motherboard];
    children.extend(link_devices.iter().map(|d| d as &dyn Aml));
    children.extend(cpus.iter().map(|d| d as &dyn Aml));
    Scope::new("\\_SB_".into(), children).to_aml_bytes(&mut aml);
    aml
}

/// Serialized AML is itself AML: lets devices built in helpers join a parent's children.
struct Serialized(Vec<u8>);

impl Aml for Serialized {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(&self.0);
    }
}

fn serialize(aml: &dyn Aml) -> Serialized {
    let mut bytes = Vec::new();
    aml.to_aml_bytes(&mut bytes);
    Serialized(bytes)
}

/// A PCI interrupt link (PNP0C0F) with one possible GSI, edge-triggered and active high.
struct InterruptLink {
    name: String,
    uid: u32,
    route: PciInterrupt,
}

impl InterruptLink {
    fn new(index: usize, route: PciInterrupt) -> Self {
        Self {
            // Four characters, as ACPI names are: LK00..LKFF.
            name: format!("LK{:02X}", index & 0xff),
            uid: index as u32 + 1,
            route,
        }
    }

    fn path(&self) -> Path {
        Path::new(&format!("\\_SB_.{}", self.name))
    }

    fn device(&self) -> Serialized {
        let interrupt = edge_interrupt(u32::from(self.route.ioapic_pin));
        let resources = ResourceTemplate::new(vec![&interrupt]);
        let hid = Name::new("_HID".into(), &EISAName::new("PNP0C0F"));
        let uid = Name::new("_UID".into(), &self.uid);
        let possible = Name::new("_PRS".into(), &resources);
        let current = Name::new("_CRS".into(), &resources);
        // The one possible setting is always the current one: nothing to set.
        let set = Method::new("_SRS".into(), 1, false, vec![]);
        serialize(&Device::new(
            self.name.as_str().into(),
            vec![&hid, &uid, &possible, &current, &set],
        ))
    }
}

fn host_bridge(links: &[InterruptLink]) -> Serialized {
    let hid = Name::new("_HID".into(), &EISAName::new("PNP0A08"));
    let cid = Name::new("_CID".into(), &EISAName::new("PNP0A03"));
    let adr = Name::new("_ADR".into(), &ZERO);
    let seg = Name::new("_SEG".into(), &ZERO);
    let uid = Name::new("_UID".into(), &ZERO);
    let bbn = Name::new("_BBN".into(), &ZERO);
    let buses = AddressSpace::new_bus_number(0u16, 0u16);
    let config_ports = IO::new(0xcf8, 0xcf8, 1, 8);
    let io_below_config = AddressSpace::new_io(0u16, 0x0cf7u16, None);
    let io_above_config = AddressSpace::new_io(0x0d00u16, 0xffffu16, None);
    let bar_window = AddressSpace::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        PCI_MMIO_START as u32,
        (PCI_MMIO_END - 1) as u32,
        None,
    );
    let resources = ResourceTemplate::new(vec![
        &buses,
        &config_ports,
        &io_below_config,
        &io_above_config,
        &bar_window,
    ]);
    let crs = Name::new("_CRS".into(), &resources);

    // _PRT entries: (device address with any function, pin, link, index in the link).
    let addresses: Vec<u32> = links
        .iter()
        .map(|l| (u32::from(l.route.slot) << 16) | 0xffff)
        .collect();
    let pins: Vec<u8> = links.iter().map(|l| l.route.pin).collect();
    let paths: Vec<Path> = links.iter().map(InterruptLink::path).collect();
    let entries: Vec<Package> = (0..links.len())
        .map(|i| Package::new(vec![&addresses[i], &pins[i], &paths[i], &ZERO]))
        .collect();
    let prt = Package::new(entries.iter().map(|p| p as &dyn Aml).collect());
    let prt = Name::new("_PRT".into(), &prt);
    serialize(&Device::new(
        "PCI0".into(),
        vec![&hid, &cid, &adr, &seg, &uid, &bbn, &crs, &prt],
    ))
}

fn power_button() -> Serialized {
    let button_hid = Name::new("_HID".into(), &EISAName::new("PNP0C0C"));
    let button_uid = Name::new("_UID".into(), &ZERO);
    let button = Device::new("PWRB".into(), vec![&button_hid, &button_uid]);

    let ged_hid = Name::new("_HID".into(), &"ACPI0013");
    let ged_uid = Name::new("_UID".into(), &ZERO);
    let interrupt = edge_interrupt(GED_GSI);
    let ged_crs = Name::new("_CRS".into(), &ResourceTemplate::new(vec![&interrupt]));
    // The GED's one interrupt is the power button.
    let button_path = Path::new("\\_SB_.PWRB");
    let notify = Notify::new(&button_path, &NOTIFY_BUTTON_PRESSED);
    let event = Method::new("_EVT".into(), 1, true, vec![&notify]);
    let ged = Device::new("GED0".into(), vec![&ged_hid, &ged_uid, &ged_crs, &event]);

    let mut bytes = Vec::new();
    button.to_aml_bytes(&mut bytes);
    ged.to_aml_bytes(&mut bytes);
    Serialized(bytes)
}

fn com1() -> Serialized {
    let hid = Name::new("_HID".into(), &EISAName::new("PNP0501"));
    let uid = Name::new("_UID".into(), &1u8);
    let ports = IO::new(COM1_PORT, COM1_PORT, 1, 8);
    let interrupt = edge_interrupt(COM1_GSI);
    let crs = Name::new(
        "_CRS".into(),
        &ResourceTemplate::new(vec![&ports, &interrupt]),
    );
    serialize(&Device::new("COM1".into(), vec![&hid, &uid, &crs]))
}

fn rtc() -> Serialized {
    let hid = Name::new("_HID".into(), &EISAName::new("PNP0B00"));
    let ports = IO::new(RTC_PORT, RTC_PORT, 1, 2);
    let crs = Name::new("_CRS".into(), &ResourceTemplate::new(vec![&ports]));
    serialize(&Device::new("RTC_".into(), vec![&hid, &crs]))
}

fn motherboard_resources() -> Serialized {
    let hid = Name::new("_HID".into(), &EISAName::new("PNP0C02"));
    let uid = Name::new("_UID".into(), &ZERO);
    let ecam = Memory32Fixed::new(true, PCI_ECAM_START as u32, PCI_ECAM_SIZE as u32);
    let registers = IO::new(ACPI_PM_PORT, ACPI_PM_PORT, 1, PM_REGISTER_COUNT as u8);
    let crs = Name::new(
        "_CRS".into(),
        &ResourceTemplate::new(vec![&ecam, &registers]),
    );
    serialize(&Device::new("MBRD".into(), vec![&hid, &uid, &crs]))
}

fn processor(index: u8) -> Serialized {
    let hid = Name::new("_HID".into(), &"ACPI0007");
    let uid = Name::new("_UID".into(), &u32::from(index));
    serialize(&Device::new(
        format!("C{index:03X}").as_str().into(),
        vec![&hid, &uid],
    ))
}
