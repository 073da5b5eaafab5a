//! Tier 3: the KVM API on this host's /dev/kvm, with tiny real-mode programs instead of Linux
//! (see shared/LAB.md: the build machines' KVM runs those, not a full kernel).

use std::io::Write;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use kvm_ioctls::{IoEventAddress, NoDatamatch};
use ringvisor::kvm::PauseHolder::{Machine, User};
use ringvisor::kvm::{KvmVm, PauseControl, PauseError, VcpuStop, VmError};
use ringvisor::mmio_bus::MmioBus;
use ringvisor::pci::virtio::{plug_virtio_pci, VirtioPciDevice, VirtioPciServices};
use ringvisor::pci::{
    InterruptController, IoEventRegistry, MsiMessage, PciConfigIo, PciHostBridge, PciRootBus,
    VmEventError,
};
use ringvisor::pio_bus::{ConsoleSink, PortIoBus};
use ringvisor_devices::legacy::SerialPort;
use ringvisor_devices::virtio::{ActivateError, VirtioDevice};
use ringvisor_io::IrqEvent;
use ringvisor_io::{AttachedQueue, QueueBinding, QueueHost, QueueHostError, QueueWorker};
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

const CODE: u64 = 0x1000;
const RESULT: u64 = 0x2000;
/// Only the first 128 KiB are RAM: the program's accesses at 0x30000 are MMIO exits.
const RAM_SIZE: usize = 0x20000;
const KICK_PORT: u16 = 0x500;

/// Real-mode program: serial out, a PCI config read, an ioeventfd kick, an MMIO write and
/// read, then the i8042 reset.
const PROGRAM: &[u8] = &[
    0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xb0, b'K', // mov al, 'K'
    0xee, // out dx, al
    0x66, 0xb8, 0x00, 0x00, 0x00, 0x80, // mov eax, 0x80000000 (bus 0, dev 0, reg 0)
    0xba, 0xf8, 0x0c, // mov dx, 0xcf8
    0x66, 0xef, // out dx, eax
    0xba, 0xfc, 0x0c, // mov dx, 0xcfc
    0x66, 0xed, // in eax, dx
    0x66, 0xa3, 0x00, 0x20, // mov [0x2000], eax
    0xba, 0x00, 0x05, // mov dx, 0x500
    0xee, // out dx, al  (ioeventfd: no exit)
    0xb8, 0x00, 0x30, // mov ax, 0x3000
    0x8e, 0xd8, // mov ds, ax
    0xc6, 0x06, 0x00, 0x00, 0x55, // mov byte [0], 0x55  (MMIO write at 0x30000)
    0xa0, 0x00, 0x00, // mov al, [0]  (MMIO read)
    0x31, 0xdb, // xor bx, bx
    0x8e, 0xdb, // mov ds, bx
    0xa2, 0x04, 0x20, // mov [0x2004], al
    0xb0, 0xfe, // mov al, 0xfe
    0xe6, 0x64, // out 0x64, al  (i8042 pulse reset)
    0xf4, // hlt
];

#[derive(Clone, Default)]
struct SharedSink(Arc<Mutex<Vec<u8>>>);

impl Write for SharedSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// RAM with `PROGRAM` at `CODE`, and a port bus whose serial output lands in the sink.
fn program_machine(vm: &KvmVm) -> (GuestMemoryMmap<()>, PortIoBus, SharedSink) {
    let mem: GuestMemoryMmap<()> =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).unwrap();
    vm.map_memory(&mem).unwrap();
    mem.write_slice(PROGRAM, GuestAddress(CODE)).unwrap();
    let serial_irq = IrqEvent::new().unwrap();
    vm.bind_irqfd(serial_irq.eventfd(), 4).unwrap();
    let sink = SharedSink::default();
    let mut root = PciRootBus::new();
    root.add(Box::new(PciHostBridge::new()));
    let bus = PortIoBus::new(
        SerialPort::new(serial_irq, Box::new(sink.clone()) as ConsoleSink),
        PciConfigIo::new(root),
    );
    (mem, bus, sink)
}

/// vCPU 0 in real mode with CS at 0, about to run the program at `CODE`.
fn real_mode_vcpu(vm: &KvmVm) -> ringvisor::kvm::Vcpu {
    let vcpu = vm.create_vcpu(0, 1).unwrap();
    point_at_program(&vcpu);
    vcpu
}

fn point_at_program(vcpu: &ringvisor::kvm::Vcpu) {
    let mut sregs = vcpu.fd().get_sregs().unwrap();
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.fd().set_sregs(&sregs).unwrap();
    let mut regs = vcpu.fd().get_regs().unwrap();
    regs.rip = CODE;
    regs.rflags = 2;
    vcpu.fd().set_regs(&regs).unwrap();
}

fn open_vm() -> Option<KvmVm> {
    match KvmVm::create() {
        Ok(vm) => Some(vm),
        Err(err @ (VmError::NoKvm | VmError::KvmPermission)) => {
            ringvisor_test_support::skip(format!(
                "the KVM smoke test needs a usable /dev/kvm: {err}"
            ));
            None
        }
        Err(err) => panic!("creating a VM failed: {err}"),
    }
}

#[test]
fn real_mode_program_exercises_pio_pci_ioeventfd_mmio_and_reset() {
    let Some(vm) = open_vm() else { return };
    let kick = EventFd::new(EFD_NONBLOCK).unwrap();
    vm.fd()
        .register_ioevent(
            &kick,
            &IoEventAddress::Pio(u64::from(KICK_PORT)),
            NoDatamatch,
        )
        .unwrap();
    let (mem, bus, sink) = program_machine(&vm);
    let mut vcpu = real_mode_vcpu(&vm);

    let mmio = MmioBus::new();
    let pause = PauseControl::new(vm.shared_fd(), 1).unwrap();
    let (done, stopped) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(vcpu.run(&bus, &mmio, &pause));
    });
    // A guard against a hung vCPU, not a performance bound.
    let stop = stopped
        .recv_timeout(Duration::from_secs(120))
        .expect("the vCPU never reached the reset");
    assert!(matches!(stop, VcpuStop::Reset), "{stop:?}");
    assert_eq!(sink.0.lock().unwrap().as_slice(), b"K");
    let host_bridge_id: u32 = mem.read_obj(GuestAddress(RESULT)).unwrap();
    assert_eq!(host_bridge_id, 0x0d57_8086);
    let mmio_read: u8 = mem.read_obj(GuestAddress(RESULT + 4)).unwrap();
    assert_eq!(mmio_read, 0xff, "unclaimed MMIO reads float high");
    assert_eq!(kick.read().unwrap(), 1, "the kick landed on the ioeventfd");
}

/// A reboot's vCPU reset on this host's KVM: after the program ran to its reset, the
/// vCPU goes back to its power-on state (reset vector, the MSRs a guest kernel registers
/// with KVM cleared, the interrupt controllers as created) and runs the program again.
#[test]
fn vcpu_and_irqchip_go_back_to_power_on_and_run_again() {
    use kvm_bindings::{kvm_msr_entry, Msrs};
    let Some(vm) = open_vm() else { return };
    let (_mem, bus, sink) = program_machine(&vm);
    let mut vcpu = real_mode_vcpu(&vm);
    let power_on_rip = {
        // What reset_to_power_on must bring back: the reset vector KVM created it with.
        let fresh = vm.create_vcpu(1, 2).unwrap();
        fresh.reset_to_power_on().unwrap();
        fresh.fd().get_regs().unwrap().rip
    };
    let pause = PauseControl::new(vm.shared_fd(), 1).unwrap();
    let mmio = MmioBus::new();
    // kvmclock, as a guest kernel registers it: a reboot must turn it off.
    const MSR_KVM_SYSTEM_TIME_NEW: u32 = 0x4b56_4d01;
    for round in 1..=2 {
        let stop = vcpu.run(&bus, &mmio, &pause);
        assert!(matches!(stop, VcpuStop::Reset), "round {round}: {stop:?}");
        let mut msrs = Msrs::from_entries(&[kvm_msr_entry {
            index: MSR_KVM_SYSTEM_TIME_NEW,
            data: 0x7001,
            ..Default::default()
        }])
        .unwrap();
        let kvmclock_on = vcpu.fd().set_msrs(&msrs).unwrap() == 1;
        vm.irqchip_power_on().restore(vm.fd()).unwrap();
        vcpu.reset_to_power_on().unwrap();
        assert_eq!(vcpu.fd().get_regs().unwrap().rip, power_on_rip);
        if kvmclock_on {
            assert_eq!(vcpu.fd().get_msrs(&mut msrs).unwrap(), 1);
            assert_eq!(
                msrs.as_slice()[0].data,
                0,
                "kvmclock left on across the reset"
            );
        }
        point_at_program(&vcpu);
    }
    assert_eq!(
        sink.0.lock().unwrap().as_slice(),
        b"KK",
        "the program ran twice"
    );
}

#[test]
fn gsi_routing_table_with_msi_routes_is_accepted() {
    let Some(vm) = open_vm() else { return };
    let router = vm.irq_router();
    // The default irqchip table alone, then with MSI routes added, changed and removed.
    router.install().unwrap();
    let first = router.allocate_msi_gsi().unwrap();
    let second = router.allocate_msi_gsi().unwrap();
    assert_eq!((first, second), (24, 25));
    let message = MsiMessage {
        address_lo: 0xfee0_0000,
        address_hi: 0,
        data: 0x41,
    };
    router.set_msi_route(first, Some(message)).unwrap();
    router
        .set_msi_route(
            second,
            Some(MsiMessage {
                data: 0x42,
                ..message
            }),
        )
        .unwrap();
    let vector = IrqEvent::new().unwrap();
    router.bind_irqfd(vector.eventfd(), first).unwrap();
    router.unbind_irqfd(vector.eventfd(), first).unwrap();
    router.set_msi_route(first, None).unwrap();

    // The legacy lines still work after the table was replaced: the serial irqfd binds.
    let serial_irq = IrqEvent::new().unwrap();
    vm.bind_irqfd(serial_irq.eventfd(), 4).unwrap();
    serial_irq.signal().unwrap();
}

/// A device with two queues that never gets as far as DRIVER_OK in this test.
struct TwoQueues;

impl VirtioDevice for TwoQueues {
    fn device_type(&self) -> u32 {
        2
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![256, 256]
    }
    fn offered_features(&self) -> u64 {
        0
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(
        &mut self,
        _mem: GuestMemoryMmap<()>,
        _acked_features: u64,
        _queues: Vec<(u16, Queue)>,
    ) -> Result<Vec<(u16, Box<dyn QueueWorker>)>, ActivateError> {
        Err(ActivateError::Backend("not in this test".into()))
    }
    fn reset(&mut self) {}
}

struct NoReactors;

/// KVM's ioeventfd registry, remembering which addresses KVM accepted (the transport only
/// logs a refusal, since kicks then still work through MMIO exits).
struct AcceptedIoevents(Arc<ringvisor::kvm::KvmIrqRouter>, Mutex<Vec<u64>>);

impl IoEventRegistry for AcceptedIoevents {
    fn register_ioevent(&self, event: &EventFd, addr: u64) -> Result<(), VmEventError> {
        self.0.register_ioevent(event, addr)?;
        self.1.lock().unwrap().push(addr);
        Ok(())
    }
    fn unregister_ioevent(&self, event: &EventFd, addr: u64) -> Result<(), VmEventError> {
        self.0.unregister_ioevent(event, addr)?;
        self.1.lock().unwrap().retain(|a| *a != addr);
        Ok(())
    }
}

impl QueueHost for NoReactors {
    fn attach(&self, _binding: QueueBinding) -> Result<AttachedQueue, QueueHostError> {
        Err(QueueHostError::ReactorGone(0))
    }
    fn detach(&self, _queue: AttachedQueue) -> Result<(), QueueHostError> {
        Ok(())
    }
}

/// BAR0 of the virtio-pci device: above the 128 KiB of RAM, aligned to its 64 KiB size.
const VIRTIO_BAR: u64 = 0x30000;

/// Real-mode program: kick queue 1 through its doorbell, read num_queues from the common
/// configuration, store it, then reset.
const VIRTIO_PROGRAM: &[u8] = &[
    0xb8, 0x00, 0x30, // mov ax, 0x3000
    0x8e, 0xd8, // mov ds, ax
    0xc7, 0x06, 0x04, 0x30, 0x01, 0x00, // mov word [0x3004], 1  (queue 1 doorbell)
    0xa1, 0x12, 0x00, // mov ax, [0x12]  (num_queues: an MMIO exit)
    0x31, 0xdb, // xor bx, bx
    0x8e, 0xdb, // mov ds, bx
    0xa3, 0x00, 0x20, // mov [0x2000], ax
    0xb0, 0xfe, // mov al, 0xfe
    0xe6, 0x64, // out 0x64, al
    0xf4, // hlt
];

#[test]
fn virtio_pci_bar_is_served_by_the_mmio_bus_and_its_doorbell_by_an_ioeventfd() {
    let Some(vm) = open_vm() else { return };
    let mem: GuestMemoryMmap<()> =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).unwrap();
    vm.map_memory(&mem).unwrap();
    mem.write_slice(VIRTIO_PROGRAM, GuestAddress(CODE)).unwrap();

    let router = vm.irq_router();
    let ioevents = Arc::new(AcceptedIoevents(router.clone(), Mutex::default()));
    let services = VirtioPciServices {
        mem: mem.clone(),
        queue_host: Arc::new(NoReactors),
        interrupts: router,
        ioevents: ioevents.clone(),
    };
    let device = VirtioPciDevice::new("blk0", Box::new(TwoQueues), &services, VIRTIO_BAR).unwrap();
    let mmio = Arc::new(MmioBus::new());
    let mut root = PciRootBus::new();
    root.add(Box::new(PciHostBridge::new()));
    let plugged = plug_virtio_pci(device, &mut root, &mmio).unwrap();
    assert_eq!(plugged.slot, 1);
    assert_eq!(
        *ioevents.1.lock().unwrap(),
        vec![VIRTIO_BAR + 0x3000, VIRTIO_BAR + 0x3004],
        "KVM took both doorbells"
    );
    let kick = plugged
        .device
        .lock()
        .unwrap()
        .kick_event(1)
        .unwrap()
        .try_clone()
        .unwrap();

    let serial_irq = IrqEvent::new().unwrap();
    let bus = PortIoBus::new(
        SerialPort::new(serial_irq, Box::new(SharedSink::default()) as ConsoleSink),
        PciConfigIo::new(root),
    );
    let mut vcpu = real_mode_vcpu(&vm);

    let (done, stopped) = mpsc::channel();
    let vcpu_mmio = Arc::clone(&mmio);
    let pause = PauseControl::new(vm.shared_fd(), 1).unwrap();
    std::thread::spawn(move || {
        let _ = done.send(vcpu.run(&bus, &vcpu_mmio, &pause));
    });
    let stop = stopped
        .recv_timeout(Duration::from_secs(120))
        .expect("the vCPU never reached the reset");
    assert!(matches!(stop, VcpuStop::Reset), "{stop:?}");
    let num_queues: u16 = mem.read_obj(GuestAddress(RESULT)).unwrap();
    assert_eq!(num_queues, 2);
    assert_eq!(
        kick.read().unwrap(),
        1,
        "the doorbell write reached queue 1's eventfd"
    );
}

/// A real-mode loop that counts in RAM for ever: `inc word [0x2000]; jmp back`.
const COUNTER_LOOP: &[u8] = &[0xff, 0x06, 0x00, 0x20, 0xeb, 0xfa];

#[test]
fn pause_stops_the_vcpu_and_resume_lets_it_go_on() {
    let Some(vm) = open_vm() else { return };
    let mem: GuestMemoryMmap<()> =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), RAM_SIZE)]).unwrap();
    vm.map_memory(&mem).unwrap();
    mem.write_slice(COUNTER_LOOP, GuestAddress(CODE)).unwrap();
    let bus = PortIoBus::new(
        SerialPort::new(
            IrqEvent::new().unwrap(),
            Box::new(SharedSink::default()) as ConsoleSink,
        ),
        PciConfigIo::new(PciRootBus::new()),
    );
    let mut vcpu = real_mode_vcpu(&vm);
    let pause = PauseControl::new(vm.shared_fd(), 1).unwrap();
    let vcpu_pause = Arc::clone(&pause);
    // The loop never exits: the thread ends with the test process.
    std::thread::spawn(move || vcpu.run(&bus, &MmioBus::new(), &vcpu_pause));
    let counter = || mem.read_obj::<u16>(GuestAddress(RESULT)).unwrap();
    let moving = |what: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let first = counter();
        while counter() == first {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: the counter never moved"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    moving("before the pause");

    let still = |what: &str| {
        let held = counter();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(counter(), held, "{what}: a paused vCPU runs no guest code");
    };
    assert_eq!(pause.resume(User), Err(PauseError::NotPaused));
    pause.pause(User, Duration::from_secs(20)).unwrap();
    assert!(pause.is_paused_by(User));
    assert!(!pause.is_paused_by(Machine));
    assert_eq!(
        pause.pause(User, Duration::from_secs(1)),
        Err(PauseError::AlreadyPaused)
    );
    still("paused by the user");

    pause.resume(User).unwrap();
    assert!(!pause.is_paused_by(User));
    moving("after the resume");

    // The machine's hold (a reboot in place) cannot be lifted by the user's resume ...
    pause.pause(Machine, Duration::from_secs(20)).unwrap();
    assert_eq!(pause.resume(User), Err(PauseError::NotPaused));
    still("paused by the machine");
    // ... a user's pause meanwhile succeeds at once and outlasts the machine's ...
    pause.pause(User, Duration::from_secs(1)).unwrap();
    pause.resume(Machine).unwrap();
    still("the machine's hold ended, the user's not");
    // ... and the vCPU goes on when the last hold ends.
    pause.resume(User).unwrap();
    moving("after both holds ended");
}
