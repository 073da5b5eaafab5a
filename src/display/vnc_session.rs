//! One VNC connection: the RFB handshake, then two threads. This one reads the client's
//! messages (input goes straight to the sink, so typing never waits behind a screen
//! update); a writer thread answers update requests, waiting for the screen to change
//! when the request is incremental.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use log::{debug, info, warn};

use super::rfb::{self, PixelEncoder, PixelFormat, PixelFormatError, Version};
use super::tiles::{changed_rects, Rect};
use super::vnc::ServerShared;
use super::Frame;

/// A client gets this long to finish the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client that reads nothing for this long is dropped rather than stall its writer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a waiting writer looks at new requests, closing and server stop.
const POLL: Duration = Duration::from_millis(100);
/// Clipboard text from the client is discarded; longer than this is treated as an attack.
pub const MAX_CUT_TEXT: u32 = 1 << 20;
/// The screen announced before the guest set a mode.
const NO_MODE: (u32, u32) = (640, 480);
/// A pixel value the client is not known to hold: the source's pixels have a zero top
/// byte, so it never compares equal.
const UNKNOWN: u32 = 0xFF00_0000;
const SERVER_NAME: &[u8] = b"ringvisor";

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("bad protocol version {0:?}")]
    BadVersion(String),
    #[error("security type {0} refused (only None)")]
    Security(u8),
    #[error("pixel format refused: {0}")]
    PixelFormat(#[from] PixelFormatError),
    #[error("clipboard text of {0} bytes (limit {MAX_CUT_TEXT})")]
    CutTextTooLong(u32),
    #[error("unknown message type {0}")]
    UnknownMessage(u8),
}

#[derive(Debug, Clone, Copy)]
struct UpdateRequest {
    incremental: bool,
    area: Rect,
}

impl UpdateRequest {
    /// Two outstanding requests answered by one update: the union, full if either is.
    fn merge(self, newer: UpdateRequest) -> UpdateRequest {
        UpdateRequest {
            incremental: self.incremental && newer.incremental,
            area: self.area.union(&newer.area),
        }
    }
}

/// What the reader tells the writer.
struct ClientState {
    format: PixelFormat,
    desktop_size: bool,
    pending: Option<UpdateRequest>,
    closed: bool,
    /// The framebuffer size the client was last told, which pointer coordinates use.
    size: (u32, u32),
}

struct Session<'a> {
    server: &'a ServerShared,
    state: Mutex<ClientState>,
    wake: Condvar,
}

impl Session<'_> {
    fn state(&self) -> MutexGuard<'_, ClientState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) {
        self.state().closed = true;
        self.wake.notify_all();
    }

    fn done(&self) -> bool {
        self.state().closed || self.server.is_stopping()
    }

    /// Waits for the next update request; None once the connection closes.
    fn next_request(&self) -> Option<UpdateRequest> {
        let mut state = self.state();
        loop {
            if state.closed || self.server.is_stopping() {
                return None;
            }
            if let Some(request) = state.pending.take() {
                return Some(request);
            }
            state = self
                .wake
                .wait_timeout(state, POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// Serves one connection to its end, logging how it ended.
pub(super) fn run(stream: TcpStream, peer: SocketAddr, server: &ServerShared) {
    match serve(&stream, server) {
        Ok(()) => info!("vnc: {peer} disconnected"),
        Err(SessionError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            warn!("vnc: {peer} dropped: the connection ended inside a message")
        }
        Err(e) => warn!("vnc: {peer} dropped: {e}"),
    }
    let _ = stream.shutdown(Shutdown::Both);
}

fn serve(stream: &TcpStream, server: &ServerShared) -> Result<(), SessionError> {
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    // Updates are written whole; small messages need not wait for Nagle.
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream);
    let size = handshake(&mut reader, stream, server)?;
    stream.set_read_timeout(None)?;
    let session = Session {
        server,
        state: Mutex::new(ClientState {
            format: PixelFormat::RGB888_LE,
            desktop_size: false,
            pending: None,
            closed: false,
            size,
        }),
        wake: Condvar::new(),
    };
    std::thread::scope(|scope| {
        let writer = std::thread::Builder::new()
            .name("vnc-client".into())
            .spawn_scoped(scope, || {
                let result = Writer::new(&session, size).run(stream);
                // Whatever ended the writer ends the connection: the reader's read fails.
                session.close();
                let _ = stream.shutdown(Shutdown::Both);
                result
            })?;
        let read_result = read_messages(&mut reader, &session);
        session.close();
        let _ = stream.shutdown(Shutdown::Both);
        let write_result = writer.join().unwrap_or(Ok(()));
        read_result.and(write_result)
    })
}

fn read_array<const N: usize>(reader: &mut impl Read) -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    reader.read_exact(&mut buf)?;
    Ok(buf)
}

/// The handshake up to ServerInit; returns the framebuffer size announced.
fn handshake(
    reader: &mut impl Read,
    mut out: &TcpStream,
    server: &ServerShared,
) -> Result<(u32, u32), SessionError> {
    out.write_all(rfb::VERSION_3_8)?;
    let text = read_array::<12>(reader)?;
    let version = rfb::parse_version(&text)
        .ok_or_else(|| SessionError::BadVersion(String::from_utf8_lossy(&text).into_owned()))?;
    match version {
        // 3.3: the server picks the type, and None has no SecurityResult.
        Version::V3_3 => out.write_all(&u32::from(rfb::SECURITY_NONE).to_be_bytes())?,
        Version::V3_7 | Version::V3_8 => {
            out.write_all(&[1, rfb::SECURITY_NONE])?;
            let [choice] = read_array::<1>(reader)?;
            if choice != rfb::SECURITY_NONE {
                if version == Version::V3_8 {
                    let reason = b"only security type None is offered";
                    let mut msg = rfb::SECURITY_RESULT_FAILED.to_be_bytes().to_vec();
                    msg.extend_from_slice(&(reason.len() as u32).to_be_bytes());
                    msg.extend_from_slice(reason);
                    out.write_all(&msg)?;
                }
                return Err(SessionError::Security(choice));
            }
            // 3.7 sends no SecurityResult for None; 3.8 does.
            if version == Version::V3_8 {
                out.write_all(&rfb::SECURITY_RESULT_OK.to_be_bytes())?;
            }
        }
    }
    // ClientInit: the shared flag. Every connection shares the screen, so it is moot.
    let [shared] = read_array::<1>(reader)?;
    let (width, height) = match server.source.snapshot() {
        Some((_, frame)) => clamp_size(frame.width, frame.height),
        None => NO_MODE,
    };
    let mut init = Vec::with_capacity(24 + SERVER_NAME.len());
    init.extend_from_slice(&(width as u16).to_be_bytes());
    init.extend_from_slice(&(height as u16).to_be_bytes());
    init.extend_from_slice(&PixelFormat::RGB888_LE.to_bytes());
    init.extend_from_slice(&(SERVER_NAME.len() as u32).to_be_bytes());
    init.extend_from_slice(SERVER_NAME);
    out.write_all(&init)?;
    debug!("vnc: handshake done ({version:?}, shared {shared}, {width}x{height})");
    Ok((width, height))
}

/// RFB sizes are 16-bit.
fn clamp_size(width: u32, height: u32) -> (u32, u32) {
    (
        width.min(u32::from(u16::MAX)),
        height.min(u32::from(u16::MAX)),
    )
}

/// Reads client messages until the client closes (Ok) or misbehaves (Err).
fn read_messages(reader: &mut impl Read, session: &Session<'_>) -> Result<(), SessionError> {
    loop {
        let mut kind = [0u8; 1];
        match reader.read(&mut kind) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
        match kind[0] {
            rfb::MSG_SET_PIXEL_FORMAT => {
                let msg = read_array::<19>(reader)?;
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(&msg[3..]);
                let format = PixelFormat::from_bytes(&bytes);
                format.validate()?;
                debug!("vnc: pixel format {format:?}");
                session.state().format = format;
            }
            rfb::MSG_SET_ENCODINGS => {
                let [_, hi, lo] = read_array::<3>(reader)?;
                let mut desktop_size = false;
                for _ in 0..u16::from_be_bytes([hi, lo]) {
                    let encoding = i32::from_be_bytes(read_array::<4>(reader)?);
                    desktop_size |= encoding == rfb::ENCODING_DESKTOP_SIZE;
                }
                // Raw is always used: every client must accept it.
                session.state().desktop_size = desktop_size;
            }
            rfb::MSG_FRAMEBUFFER_UPDATE_REQUEST => {
                let m = read_array::<9>(reader)?;
                let field = |i: usize| u32::from(u16::from_be_bytes([m[i], m[i + 1]]));
                let request = UpdateRequest {
                    incremental: m[0] != 0,
                    area: Rect::new(field(1), field(3), field(5), field(7)),
                };
                let mut state = session.state();
                state.pending = Some(match state.pending {
                    Some(older) => older.merge(request),
                    None => request,
                });
                session.wake.notify_all();
            }
            rfb::MSG_KEY_EVENT => {
                let m = read_array::<7>(reader)?;
                let keysym = u32::from_be_bytes([m[3], m[4], m[5], m[6]]);
                if let Some(input) = &session.server.input {
                    input.key(keysym, m[0] != 0);
                }
            }
            rfb::MSG_POINTER_EVENT => {
                let [buttons, xh, xl, yh, yl] = read_array::<5>(reader)?;
                let (width, height) = session.state().size;
                // Clients may report positions past the edge while dragging.
                let clamp = |v: u16, limit: u32| v.min(limit.saturating_sub(1) as u16);
                let x = clamp(u16::from_be_bytes([xh, xl]), width);
                let y = clamp(u16::from_be_bytes([yh, yl]), height);
                if let Some(input) = &session.server.input {
                    input.pointer(x, y, buttons, width, height);
                }
            }
            rfb::MSG_CLIENT_CUT_TEXT => {
                let m = read_array::<7>(reader)?;
                let len = u32::from_be_bytes([m[3], m[4], m[5], m[6]]);
                if len > MAX_CUT_TEXT {
                    return Err(SessionError::CutTextTooLong(len));
                }
                let skipped = io::copy(&mut reader.take(u64::from(len)), &mut io::sink())?;
                if skipped != u64::from(len) {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
                }
            }
            other => return Err(SessionError::UnknownMessage(other)),
        }
    }
}

/// The screen now, sized for RFB and with exactly width x height pixels; a black
/// 640x480 before a mode exists.
fn current_frame(server: &ServerShared) -> (Option<u64>, Frame) {
    match server.source.snapshot() {
        Some((version, frame)) => {
            let (width, height) = clamp_size(frame.width, frame.height);
            (Some(version), fit(frame, width, height))
        }
        None => (None, Frame::filled(NO_MODE.0, NO_MODE.1, 0)),
    }
}

/// `frame` cropped or padded with black to `width` x `height`: for a client that cannot
/// be told of a resize, and for a source whose pixel vector is the wrong length.
fn fit(frame: Frame, width: u32, height: u32) -> Frame {
    if (frame.width, frame.height) == (width, height) && frame.is_consistent() {
        return frame;
    }
    let mut out = Frame::filled(width, height, 0);
    let copy_w = width.min(frame.width) as usize;
    for y in 0..height.min(frame.height) as usize {
        let src = y * frame.width as usize;
        let Some(row) = frame.pixels.get(src..src + copy_w) else {
            break;
        };
        let dst = y * width as usize;
        out.pixels[dst..dst + copy_w].copy_from_slice(row);
    }
    out
}

/// Answers update requests for one client, remembering what it was sent.
struct Writer<'s, 'a> {
    session: &'s Session<'a>,
    /// The size the client's framebuffer has.
    size: (u32, u32),
    /// The pixels the client holds, [`UNKNOWN`] where it was sent nothing; None when it
    /// holds nothing at all (start, after a resize).
    view: Option<Frame>,
    /// Set by a resize: the next update covers the whole new screen, whatever area was
    /// asked, because clients may still ask with the old size (vncdotool does).
    resized: bool,
    /// The source version last looked at, for `wait_for_change`.
    seen: u64,
    encoder: PixelEncoder,
}

impl<'s, 'a> Writer<'s, 'a> {
    fn new(session: &'s Session<'a>, size: (u32, u32)) -> Self {
        Self {
            session,
            size,
            view: None,
            resized: false,
            seen: 0,
            encoder: PixelEncoder::new(PixelFormat::RGB888_LE),
        }
    }

    fn run(mut self, stream: &TcpStream) -> Result<(), SessionError> {
        let mut out = BufWriter::with_capacity(64 * 1024, stream);
        while let Some(request) = self.session.next_request() {
            self.answer(request, &mut out)?;
            out.flush()?;
        }
        Ok(())
    }

    /// Sends one update for `request`, waiting first if it is incremental and nothing in
    /// its area changed. Returns without sending when the connection closes.
    fn answer(&mut self, mut request: UpdateRequest, out: &mut impl Write) -> io::Result<()> {
        let server = self.session.server;
        loop {
            let (version, frame) = current_frame(server);
            if let Some(version) = version {
                self.seen = version;
            }
            let (format, desktop_size) = {
                let state = self.session.state();
                (state.format, state.desktop_size)
            };
            let new_size = (frame.width, frame.height);
            if new_size != self.size && desktop_size {
                return self.resize(new_size, out);
            }
            let frame = fit(frame, self.size.0, self.size.1);
            let screen = Rect::screen(self.size.0, self.size.1);
            let area = if self.resized {
                screen
            } else {
                request.area.intersect(&screen)
            };
            let rects = match &self.view {
                Some(view) if request.incremental => changed_rects(view, &frame, area),
                _ if area.is_empty() => Vec::new(),
                _ => vec![area],
            };
            // A non-incremental request is always answered, even with no rectangles.
            if !rects.is_empty() || !request.incremental {
                self.resized = false;
                return self.send(&rects, &frame, format, out);
            }
            if !self.wait(&mut request) {
                return Ok(());
            }
        }
    }

    /// Waits until the screen changes or a newer request arrives (merged into
    /// `request`); false when the connection is closing.
    fn wait(&mut self, request: &mut UpdateRequest) -> bool {
        let seen = self.seen;
        loop {
            if self.session.done() {
                return false;
            }
            let now = self.session.server.source.wait_for_change(seen, POLL);
            if let Some(newer) = self.session.state().pending.take() {
                *request = request.merge(newer);
                return true;
            }
            if now != seen {
                // Kept even when the source has no frame to show yet, so a version
                // that moved without a snapshot does not make this spin.
                self.seen = now;
                return true;
            }
        }
    }

    fn encoding_header(out: &mut Vec<u8>, rect: &Rect, encoding: i32) {
        for v in [rect.x, rect.y, rect.width, rect.height] {
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        out.extend_from_slice(&encoding.to_be_bytes());
    }

    /// Tells a DesktopSize client the new size. Its framebuffer is undefined afterwards,
    /// so the next request is answered in full.
    fn resize(&mut self, (width, height): (u32, u32), out: &mut impl Write) -> io::Result<()> {
        let mut msg = vec![rfb::MSG_FRAMEBUFFER_UPDATE, 0, 0, 1];
        let rect = Rect::screen(width, height);
        Self::encoding_header(&mut msg, &rect, rfb::ENCODING_DESKTOP_SIZE);
        out.write_all(&msg)?;
        self.size = (width, height);
        self.view = None;
        self.resized = true;
        self.session.state().size = (width, height);
        debug!("vnc: client resized to {width}x{height}");
        Ok(())
    }

    fn send(
        &mut self,
        rects: &[Rect],
        frame: &Frame,
        format: PixelFormat,
        out: &mut impl Write,
    ) -> io::Result<()> {
        if *self.encoder.format() != format {
            self.encoder = PixelEncoder::new(format);
        }
        // Far more tiles than a screen has cannot happen, but the count is 16-bit.
        let bounding;
        let rects = if rects.len() > usize::from(u16::MAX) {
            bounding = [rects.iter().fold(Rect::default(), |a, r| a.union(r))];
            &bounding[..]
        } else {
            rects
        };
        let mut msg = vec![rfb::MSG_FRAMEBUFFER_UPDATE, 0];
        msg.extend_from_slice(&(rects.len() as u16).to_be_bytes());
        let view = self
            .view
            .get_or_insert_with(|| Frame::filled(frame.width, frame.height, UNKNOWN));
        let width = frame.width as usize;
        for rect in rects {
            Self::encoding_header(&mut msg, rect, rfb::ENCODING_RAW);
            let (x0, x1) = (rect.x as usize, (rect.x + rect.width) as usize);
            for y in rect.y as usize..(rect.y + rect.height) as usize {
                let row = &frame.pixels[y * width + x0..y * width + x1];
                self.encoder.encode(row, &mut msg);
                view.pixels[y * width + x0..y * width + x1].copy_from_slice(row);
            }
            // Keep the buffer to about one rectangle: a full screen is megabytes.
            if msg.len() > 256 * 1024 {
                out.write_all(&msg)?;
                msg.clear();
            }
        }
        out.write_all(&msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_crops_and_pads() {
        let frame = Frame {
            width: 3,
            height: 2,
            pixels: vec![1, 2, 3, 4, 5, 6],
        };
        assert_eq!(fit(frame.clone(), 2, 3).pixels, [1, 2, 4, 5, 0, 0]);
        assert_eq!(fit(frame.clone(), 3, 2), frame);
        let short = Frame {
            width: 2,
            height: 2,
            pixels: vec![7, 8, 9],
        };
        assert_eq!(fit(short, 2, 2).pixels, [7, 8, 0, 0]);
    }

    #[test]
    fn requests_merge() {
        let a = UpdateRequest {
            incremental: true,
            area: Rect::new(0, 0, 10, 10),
        };
        let b = UpdateRequest {
            incremental: false,
            area: Rect::new(20, 20, 10, 10),
        };
        let merged = a.merge(b);
        assert!(!merged.incremental);
        assert_eq!(merged.area, Rect::new(0, 0, 30, 30));
    }
}
