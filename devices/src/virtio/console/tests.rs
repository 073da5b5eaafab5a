//! Console logic without a reactor: control messages, the hub's answers, configuration.
//! The data path runs through the reactors in tests/device_path_console.rs.

use super::hub::{event, ControlMessage, Hub, Port};
use super::*;

fn temp_path(tag: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("rv-console-unit-{tag}-{}", std::process::id()))
}

fn port(name: Option<&str>, backend: &PortBackend) -> Port {
    Port {
        name: name.map(str::to_owned),
        link: HostLink::open(backend).unwrap(),
        ready: false,
        guest_open: false,
        stats: PortStats::default(),
    }
}

#[test]
fn control_messages_round_trip_little_endian() {
    let message = ControlMessage {
        name: b"org.test".to_vec(),
        ..ControlMessage::new(0x0102_0304, event::PORT_NAME, 1)
    };
    let bytes = message.encode();
    assert_eq!(&bytes[..8], &[4, 3, 2, 1, 7, 0, 1, 0]);
    assert_eq!(&bytes[8..], b"org.test");
    let header: [u8; 8] = bytes[..8].try_into().unwrap();
    assert_eq!(
        ControlMessage::parse(&header),
        ControlMessage::new(0x0102_0304, event::PORT_NAME, 1)
    );
}

#[test]
fn port_names_become_safe_file_names() {
    assert!(valid_port_name("org.qemu.guest_agent.0"));
    assert!(valid_port_name("bench-results"));
    for bad in [
        "",
        "a/b",
        "..\0",
        "with space",
        &"x".repeat(MAX_NAME_LEN + 1),
    ] {
        assert!(!valid_port_name(bad), "{bad:?}");
    }
}

#[test]
fn the_hub_answers_the_linux_handshake() {
    let out = temp_path("hub.out");
    let sock = temp_path("hub.sock");
    let mut hub = Hub::new(vec![
        port(None, &PortBackend::File(out.clone())),
        port(Some("named"), &PortBackend::Socket(sock.clone())),
    ]);
    hub.handle_driver_message(ControlMessage::new(0, event::DEVICE_READY, 1));
    let added: Vec<_> = hub.outbox.drain(..).collect();
    assert_eq!(
        added,
        vec![
            ControlMessage::new(0, event::DEVICE_ADD, 1),
            ControlMessage::new(1, event::DEVICE_ADD, 1)
        ]
    );
    hub.handle_driver_message(ControlMessage::new(0, event::PORT_READY, 1));
    hub.handle_driver_message(ControlMessage::new(1, event::PORT_READY, 1));
    let setup: Vec<_> = hub.outbox.drain(..).collect();
    assert_eq!(
        setup,
        vec![
            ControlMessage::new(0, event::CONSOLE_PORT, 1),
            ControlMessage::new(0, event::PORT_OPEN, 1),
            ControlMessage {
                name: b"named".to_vec(),
                ..ControlMessage::new(1, event::PORT_NAME, 1)
            },
        ],
        "a socket without a client is not announced open"
    );
    assert!(hub.ports[0].guest_open, "Linux opens the console itself");
    assert!(!hub.ports[1].guest_open);
    hub.handle_driver_message(ControlMessage::new(1, event::PORT_OPEN, 1));
    assert!(hub.ports[1].guest_open);
    // Unknown ports and events are counted, not acted on.
    hub.handle_driver_message(ControlMessage::new(7, event::PORT_READY, 1));
    hub.handle_driver_message(ControlMessage::new(1, 0x99, 0));
    assert_eq!(hub.bad_control, 2);
    assert!(hub.outbox.is_empty());
    // A reset forgets the driver's state, not the host ends.
    hub.reset();
    assert!(!hub.ports[1].ready && !hub.ports[0].guest_open);
    assert!(hub.ports[1].link.listener_fd().is_some());
    let _ = std::fs::remove_file(out);
    let _ = std::fs::remove_file(sock);
}

#[test]
fn configuration_space_and_queue_layout() {
    let out = temp_path("cfg.out");
    let device = ConsoleDevice::new(ConsoleConfig {
        console: PortBackend::File(out.clone()),
        ports: vec![NamedPort {
            name: "p1".into(),
            backend: PortBackend::File(out.clone()),
        }],
    })
    .unwrap();
    let mut space = [0u8; 12];
    device.read_config(0, &mut space);
    assert_eq!(&space[4..8], &2u32.to_le_bytes(), "max_nr_ports");
    assert_eq!(device.queue_max_sizes().len(), 6);
    assert!(device.offered_features() & VIRTIO_CONSOLE_F_MULTIPORT != 0);
    assert!((0..6).all(|q| device.queue_group(q) == 0));
    assert_eq!(port_rx_queue(0), 0);
    assert_eq!(port_rx_queue(1), 4);
    assert_eq!(port_rx_queue(5), 12);
    let _ = std::fs::remove_file(out);
}

#[test]
fn too_many_ports_are_refused() {
    let out = temp_path("many.out");
    let ports = (0..=MAX_NAMED_PORTS)
        .map(|i| NamedPort {
            name: format!("p{i}"),
            backend: PortBackend::File(out.clone()),
        })
        .collect();
    let err = ConsoleDevice::new(ConsoleConfig {
        console: PortBackend::File(out.clone()),
        ports,
    })
    .err()
    .unwrap();
    assert!(matches!(err, ConsoleError::TooManyPorts(n) if n == MAX_NAMED_PORTS + 1));
    let _ = std::fs::remove_file(out);
}
