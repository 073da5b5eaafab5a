//! A small blocking RFB 3.8 client: enough to grab the screen of a VNC server (ours, in
//! tests and the lab's `vnc-grab`) and to send it keys and pointer moves.

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use ringvisor::display::rfb::{self, PixelFormat, Version};
use ringvisor::display::Frame;

/// The largest screen accepted from a server (8192 x 8192), against hostile headers.
const MAX_PIXELS: u64 = 1 << 26;
/// Longer server names, failure reasons or clipboard texts are refused.
const MAX_TEXT: u32 = 1 << 20;
/// A server that keeps resizing is given up on after this many resizes in one grab.
const MAX_RESIZES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum RfbError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("timed out")]
    Timeout,
    #[error("not an RFB server (it sent {0:?})")]
    NotRfb(String),
    #[error("the server refused: {0}")]
    Refused(String),
    #[error("the server does not offer security type None")]
    NoSecurityNone,
    #[error("the server's screen of {width}x{height} is empty or too large")]
    BadSize { width: u32, height: u32 },
    #[error("the server sent {0} bytes of text (limit {MAX_TEXT})")]
    TextTooLong(u32),
    #[error("unexpected server message type {0}")]
    UnexpectedMessage(u8),
    #[error("rectangle {x},{y} {width}x{height} lies outside the {screen_w}x{screen_h} screen")]
    BadRect {
        x: u16,
        y: u16,
        width: u16,
        height: u16,
        screen_w: u32,
        screen_h: u32,
    },
    #[error("the server used encoding {0}, which was not asked for")]
    UnsupportedEncoding(i32),
    #[error("the server keeps resizing the screen")]
    ResizeLoop,
}

/// Reads with the socket timeout set to what is left until a deadline, so a whole
/// exchange (not each read) is bounded.
struct TimedStream {
    stream: TcpStream,
    deadline: Instant,
}

impl Read for TimedStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// Socket timeouts show as WouldBlock or TimedOut; both mean the deadline passed.
fn map_io(e: io::Error) -> RfbError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => RfbError::Timeout,
        _ => RfbError::Io(e),
    }
}

/// A connection to a VNC server, after the handshake.
pub struct RfbClient {
    reader: BufReader<TimedStream>,
    writer: TcpStream,
    timeout: Duration,
    format: PixelFormat,
    name: String,
    frame: Frame,
}

impl RfbClient {
    /// Connects and completes the handshake (security None, shared session), then asks
    /// for 32-bit little-endian 0x00RRGGBB pixels, Raw and DesktopSize. `timeout` bounds
    /// the connection and, later, each request.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<Self, RfbError> {
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(map_io)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        let reader = BufReader::with_capacity(
            64 * 1024,
            TimedStream {
                stream,
                deadline: Instant::now() + timeout,
            },
        );
        let mut client = RfbClient {
            reader,
            writer,
            timeout,
            format: PixelFormat::RGB888_LE,
            name: String::new(),
            frame: Frame::filled(0, 0, 0),
        };
        client.handshake().map_err(|e| match e {
            RfbError::Io(e) => map_io(e),
            e => e,
        })?;
        Ok(client)
    }

    /// The screen size the server announced (or last resized to).
    pub fn size(&self) -> (u32, u32) {
        (self.frame.width, self.frame.height)
    }

    /// The desktop name from ServerInit.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RfbError> {
        let mut buf = [0u8; N];
        self.reader.read_exact(&mut buf).map_err(map_io)?;
        Ok(buf)
    }

    fn u16(&mut self) -> Result<u16, RfbError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, RfbError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A length-prefixed string (reasons, names).
    fn text(&mut self) -> Result<String, RfbError> {
        let len = self.u32()?;
        if len > MAX_TEXT {
            return Err(RfbError::TextTooLong(len));
        }
        let mut bytes = vec![0u8; len as usize];
        self.reader.read_exact(&mut bytes).map_err(map_io)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn skip(&mut self, len: u64) -> Result<(), RfbError> {
        let skipped =
            io::copy(&mut (&mut self.reader).take(len), &mut io::sink()).map_err(map_io)?;
        if skipped != len {
            return Err(RfbError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        Ok(())
    }

    fn send(&mut self, msg: &[u8]) -> Result<(), RfbError> {
        self.writer.write_all(msg).map_err(map_io)
    }

    /// Starts a new exchange bounded by the timeout.
    fn arm(&mut self) {
        self.reader.get_mut().deadline = Instant::now() + self.timeout;
    }

    fn resize(&mut self, width: u32, height: u32) -> Result<(), RfbError> {
        if u64::from(width) * u64::from(height) > MAX_PIXELS {
            return Err(RfbError::BadSize { width, height });
        }
        self.frame = Frame::filled(width, height, 0);
        Ok(())
    }

    fn handshake(&mut self) -> Result<(), RfbError> {
        let text = self.array::<12>()?;
        let version = rfb::parse_version(&text)
            .ok_or_else(|| RfbError::NotRfb(String::from_utf8_lossy(&text).into_owned()))?;
        let reply: &[u8; 12] = match version {
            Version::V3_3 => b"RFB 003.003\n",
            Version::V3_7 => b"RFB 003.007\n",
            Version::V3_8 => rfb::VERSION_3_8,
        };
        self.send(reply)?;
        if version == Version::V3_3 {
            match self.u32()? {
                0 => return Err(RfbError::Refused(self.text()?)),
                1 => {}
                _ => return Err(RfbError::NoSecurityNone),
            }
        } else {
            let [count] = self.array::<1>()?;
            if count == 0 {
                return Err(RfbError::Refused(self.text()?));
            }
            let mut types = vec![0u8; usize::from(count)];
            self.reader.read_exact(&mut types).map_err(map_io)?;
            if !types.contains(&rfb::SECURITY_NONE) {
                return Err(RfbError::NoSecurityNone);
            }
            self.send(&[rfb::SECURITY_NONE])?;
            if version == Version::V3_8 && self.u32()? != rfb::SECURITY_RESULT_OK {
                return Err(RfbError::Refused(self.text()?));
            }
        }
        self.send(&[1])?; // ClientInit: share the screen with other clients
        let (width, height) = (self.u16()?, self.u16()?);
        let _server_format = self.array::<16>()?;
        self.name = self.text()?;
        self.resize(u32::from(width), u32::from(height))?;
        let mut set_format = vec![rfb::MSG_SET_PIXEL_FORMAT, 0, 0, 0];
        set_format.extend_from_slice(&self.format.to_bytes());
        self.send(&set_format)?;
        let mut encodings = vec![rfb::MSG_SET_ENCODINGS, 0, 0, 2];
        encodings.extend_from_slice(&rfb::ENCODING_RAW.to_be_bytes());
        encodings.extend_from_slice(&rfb::ENCODING_DESKTOP_SIZE.to_be_bytes());
        self.send(&encodings)
    }

    /// Asks for the whole screen (non-incremental) and returns it once every rectangle
    /// arrived; a resize announced on the way is followed by a new request.
    pub fn grab(&mut self) -> Result<Frame, RfbError> {
        self.arm();
        for _ in 0..MAX_RESIZES {
            let (width, height) = self.size();
            let mut request = vec![rfb::MSG_FRAMEBUFFER_UPDATE_REQUEST, 0];
            for v in [0, 0, width, height] {
                request.extend_from_slice(&(v as u16).to_be_bytes());
            }
            self.send(&request)?;
            if !self.read_update()? {
                return Ok(self.frame.clone());
            }
        }
        Err(RfbError::ResizeLoop)
    }

    /// Reads server messages up to the end of one FramebufferUpdate; true if it resized
    /// the screen.
    fn read_update(&mut self) -> Result<bool, RfbError> {
        loop {
            let [kind] = self.array::<1>()?;
            match kind {
                rfb::MSG_FRAMEBUFFER_UPDATE => break,
                rfb::MSG_SET_COLOUR_MAP_ENTRIES => {
                    let [_, _, _, hi, lo] = self.array::<5>()?;
                    self.skip(6 * u64::from(u16::from_be_bytes([hi, lo])))?;
                }
                rfb::MSG_BELL => {}
                rfb::MSG_SERVER_CUT_TEXT => {
                    let _padding = self.array::<3>()?;
                    let len = self.u32()?;
                    if len > MAX_TEXT {
                        return Err(RfbError::TextTooLong(len));
                    }
                    self.skip(u64::from(len))?;
                }
                other => return Err(RfbError::UnexpectedMessage(other)),
            }
        }
        let [_, hi, lo] = self.array::<3>()?;
        let mut resized = false;
        for _ in 0..u16::from_be_bytes([hi, lo]) {
            let (x, y, width, height) = (self.u16()?, self.u16()?, self.u16()?, self.u16()?);
            let encoding = i32::from_be_bytes(self.array()?);
            match encoding {
                rfb::ENCODING_RAW => self.read_raw(x, y, width, height)?,
                rfb::ENCODING_DESKTOP_SIZE => {
                    self.resize(u32::from(width), u32::from(height))?;
                    resized = true;
                }
                other => return Err(RfbError::UnsupportedEncoding(other)),
            }
        }
        Ok(resized)
    }

    fn read_raw(&mut self, x: u16, y: u16, width: u16, height: u16) -> Result<(), RfbError> {
        let (screen_w, screen_h) = self.size();
        if u32::from(x) + u32::from(width) > screen_w || u32::from(y) + u32::from(height) > screen_h
        {
            return Err(RfbError::BadRect {
                x,
                y,
                width,
                height,
                screen_w,
                screen_h,
            });
        }
        let bpp = self.format.bytes_per_pixel();
        let mut row = vec![0u8; usize::from(width) * bpp];
        for line in 0..usize::from(height) {
            self.reader.read_exact(&mut row).map_err(map_io)?;
            let start = (usize::from(y) + line) * screen_w as usize + usize::from(x);
            let pixels = &mut self.frame.pixels[start..start + usize::from(width)];
            for (pixel, bytes) in pixels.iter_mut().zip(row.chunks_exact(bpp)) {
                *pixel = self.format.decode(bytes);
            }
        }
        Ok(())
    }

    /// Presses (`down`) or releases the key with X11 keysym `keysym`.
    pub fn send_key(&mut self, keysym: u32, down: bool) -> Result<(), RfbError> {
        let mut msg = vec![rfb::MSG_KEY_EVENT, u8::from(down), 0, 0];
        msg.extend_from_slice(&keysym.to_be_bytes());
        self.send(&msg)
    }

    /// Moves the pointer to (x, y) with RFB's button mask (bit 0 left, 1 middle, 2 right).
    pub fn send_pointer(&mut self, x: u16, y: u16, buttons: u8) -> Result<(), RfbError> {
        let mut msg = vec![rfb::MSG_POINTER_EVENT, buttons];
        msg.extend_from_slice(&x.to_be_bytes());
        msg.extend_from_slice(&y.to_be_bytes());
        self.send(&msg)
    }
}

/// Connects to the VNC server at `addr` and returns its whole screen, all within about
/// `timeout` (connecting, then the handshake, then the update).
pub fn grab_frame(addr: SocketAddr, timeout: Duration) -> Result<Frame, RfbError> {
    RfbClient::connect(addr, timeout)?.grab()
}
