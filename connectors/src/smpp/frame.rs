//! SMPP framing: turns a TCP byte stream into whole PDUs, and PDUs into bytes.
//!
//! This module owns the boundary between untrusted bytes from the network and
//! the `rusmpp` PDU codec:
//!
//! * [`split_frame`] checks `16 ≤ command_length ≤` [`FrameLimits::max_len`]
//!   from the 16-byte header and takes *exactly* `command_length` bytes off the
//!   front of the read buffer. It never reserves or grows the buffer: the
//!   caller's read loop is the only thing that allocates, and a bad length is
//!   reported before any body byte is awaited (so `0xFFFFFFFF` costs nothing).
//! * [`decode`] hands rusmpp a buffer holding only that frame's bytes, and
//!   turns every decode failure into an [`Undecodable`] that still carries the
//!   header, so the session can answer `generic_nack` (or the command's
//!   `*_resp` with an error status) and keep the bind up.
//! * [`encode`] and [`generic_nack`] produce complete PDUs, header included.
//!
//! Why not rusmpp's own `CommandCodec` (see `docs/smpp-crates.md`):
//!
//! * **R1** – rusmpp's C-string decoder looks for the NUL in whatever buffer
//!   it is given, past `command_length`: `00000014800000090000000000000001534d5343`
//!   followed by an `enquire_link` makes `system_id` swallow the next PDU's
//!   bytes and the stream stalls.
//! * **R2** – body bytes rusmpp does not consume stay in the shared buffer, so
//!   an `enquire_link` with a 4-byte body breaks the *next* decode.
//! * **R3** – rusmpp is strict (e.g. `receipted_message_id` without its NUL),
//!   and in a `Framed` stream any decode error ends the stream.
//!
//! Here rusmpp only ever sees one frame's bytes, so R1 and R2 cannot cross a
//! frame boundary, and R3 becomes a per-frame [`Undecodable`]. A frame whose
//! body is not consumed exactly (trailing bytes, R2) is also [`Undecodable`]:
//! the declared length and the content disagree, so we answer rather than guess.
//! Nothing in here panics on network input (see the randomized test below).

use rusmpp::decode::DecodeWithLength;
use rusmpp::encode::{Encode, Length};
use rusmpp::{Command, CommandId};
use tokio_util::bytes::BytesMut;

/// Size of the SMPP header: command_length, command_id, command_status, sequence_number.
pub const HEADER_LEN: usize = 16;
/// Default largest accepted `command_length`.
pub const DEFAULT_MAX_LEN: u32 = 4096;

/// command_id of `generic_nack`.
pub const GENERIC_NACK: u32 = 0x8000_0000;
// The statuses the framer answers with (defined once, in `status`).
pub use super::status::{ESME_RINVCMDID, ESME_RINVCMDLEN, ESME_ROK, ESME_RSYSERR};

/// Limits for one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest accepted `command_length`, header included.
    pub max_len: u32,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_len: DEFAULT_MAX_LEN,
        }
    }
}

/// The stream cannot be framed any further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// `command_length` outside `16..=max`: the stream cannot be resynchronised;
    /// the session must be closed (after sending `generic_nack` with
    /// `ESME_RINVCMDLEN`, see [`FrameError::generic_nack`]).
    #[error("command_length {len} outside 16..={max} (sequence_number {sequence_number})")]
    BadLength {
        /// The declared `command_length`.
        len: u32,
        /// The configured maximum.
        max: u32,
        /// The offending PDU's sequence number, for the `generic_nack`.
        sequence_number: u32,
    },
}

impl FrameError {
    /// The `generic_nack` to send before closing the session.
    pub fn generic_nack(&self) -> Vec<u8> {
        match self {
            FrameError::BadLength {
                sequence_number, ..
            } => generic_nack(*sequence_number, ESME_RINVCMDLEN),
        }
    }
}

/// The 16-byte header, read without decoding the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Length of the whole PDU, header included.
    pub command_length: u32,
    /// Raw command_id (`0x8000_0000` bit set for responses).
    pub command_id: u32,
    /// Raw command_status.
    pub command_status: u32,
    /// Sequence number, to correlate the answer.
    pub sequence_number: u32,
}

impl Header {
    /// Whether the command_id is a response (`*_resp`, `generic_nack`).
    pub fn is_response(&self) -> bool {
        self.command_id & 0x8000_0000 != 0
    }
}

/// Reads the header from the first 16 bytes; `None` if fewer are present.
pub fn header(frame: &[u8]) -> Option<Header> {
    Some(Header {
        command_length: be_u32(frame, 0)?,
        command_id: be_u32(frame, 4)?,
        command_status: be_u32(frame, 8)?,
        sequence_number: be_u32(frame, 12)?,
    })
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes(word.try_into().ok()?))
}

/// Pull one complete frame off the front of `buf` (a growable read buffer).
///
/// * `Ok(None)`: more bytes are needed (fewer than 16, or fewer than
///   `command_length`). `buf` is untouched.
/// * `Ok(Some(frame))`: exactly `command_length` bytes were removed from the
///   front of `buf` and returned; the rest stays for the next call.
/// * `Err(BadLength)`: decided as soon as the 16-byte header is in, before any
///   body byte is awaited; `buf` is untouched and the session must close.
///
/// Never reads past `command_length`, never reserves capacity in `buf`.
pub fn split_frame(buf: &mut Vec<u8>, limits: &FrameLimits) -> Result<Option<Vec<u8>>, FrameError> {
    let Some(h) = header(buf) else {
        return Ok(None);
    };
    let bad = || FrameError::BadLength {
        len: h.command_length,
        max: limits.max_len,
        sequence_number: h.sequence_number,
    };
    if h.command_length > limits.max_len {
        return Err(bad());
    }
    let len = usize::try_from(h.command_length).map_err(|_| bad())?;
    if len < HEADER_LEN {
        return Err(bad());
    }
    if buf.len() < len {
        return Ok(None);
    }
    let frame = buf[..len].to_vec();
    buf.drain(..len);
    Ok(Some(frame))
}

/// A frame whose body rusmpp could not decode. The session answers it (with
/// `generic_nack`, or the command's `*_resp` carrying `status`) and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "undecodable PDU (command_id {:#010x}, sequence_number {}): {reason}",
    header.command_id,
    header.sequence_number
)]
pub struct Undecodable {
    /// The frame's header (zero-padded if the frame was shorter than 16 bytes).
    pub header: Header,
    /// Suggested command_status for the answer: [`ESME_RINVCMDLEN`] when the
    /// body does not fill the frame exactly (truncated, trailing bytes, missing
    /// body), [`ESME_RSYSERR`] for any other field rusmpp rejected.
    pub status: u32,
    /// What rusmpp (or the framer) objected to, for logs.
    pub reason: String,
}

/// Decode one frame (exactly `command_length` bytes, as returned by
/// [`split_frame`]) into a rusmpp [`Command`].
///
/// Only the frame's own bytes are handed to rusmpp, so a C-string reading past
/// the frame (R1) or unconsumed body bytes (R2) can never affect the next
/// frame. Any failure, including rusmpp's strictness (R3), trailing bytes and
/// a request without its body, is an [`Undecodable`] with the header.
///
/// On `Ok`, `pdu()` is `None` only for a response sent without a body
/// (SMSCs do this with an error status) or an unknown command_id with an empty
/// body; an unknown command_id with a body is `Pdu::Other`. Both unknown cases
/// have `id()` = `CommandId::Other(_)` and deserve `generic_nack` with
/// [`ESME_RINVCMDID`].
pub fn decode(frame: &[u8]) -> Result<Command, Undecodable> {
    let header = header_padded(frame);
    let fail = |status: u32, reason: String| Undecodable {
        header,
        status,
        reason,
    };
    if frame.len() < HEADER_LEN {
        return Err(fail(
            ESME_RINVCMDLEN,
            format!("frame is {} bytes, shorter than the header", frame.len()),
        ));
    }
    if u64::try_from(frame.len()).ok() != Some(u64::from(header.command_length)) {
        return Err(fail(
            ESME_RINVCMDLEN,
            format!(
                "frame is {} bytes but command_length is {}",
                frame.len(),
                header.command_length
            ),
        ));
    }
    // rusmpp decodes from command_id on; command_length is ours.
    let body = &frame[4..];
    let mut src = BytesMut::from(body);
    let (command, used) = match <Command as DecodeWithLength>::decode(&mut src, body.len()) {
        Ok(decoded) => decoded,
        Err(err) => {
            let status = match err.kind() {
                rusmpp::decode::DecodeErrorKind::UnexpectedEof => ESME_RINVCMDLEN,
                _ => ESME_RSYSERR,
            };
            return Err(fail(status, err.to_string()));
        }
    };
    if used != body.len() || !src.is_empty() {
        return Err(fail(
            ESME_RINVCMDLEN,
            format!(
                "{} trailing bytes after the PDU body",
                body.len().saturating_sub(used).max(src.len())
            ),
        ));
    }
    let id = command.id();
    if command.pdu().is_none() && id.is_operation() && !matches!(id, CommandId::Other(_)) {
        return Err(fail(ESME_RINVCMDLEN, format!("{id:?} without its body")));
    }
    Ok(command)
}

/// The header of a possibly short frame, missing bytes read as zero.
fn header_padded(frame: &[u8]) -> Header {
    let mut padded = [0u8; HEADER_LEN];
    let n = frame.len().min(HEADER_LEN);
    padded[..n].copy_from_slice(&frame[..n]);
    header(&padded).unwrap_or(Header {
        command_length: 0,
        command_id: 0,
        command_status: 0,
        sequence_number: 0,
    })
}

/// Encode a Command to bytes (header included).
///
/// # Panics
/// If the command is 4 GiB or longer, which SMPP field sizes make impossible
/// for any command built from its typed fields.
pub fn encode(cmd: &Command) -> Vec<u8> {
    let total = 4 + cmd.length();
    let command_length = u32::try_from(total).expect("an SMPP command is far shorter than 4 GiB");
    let mut out = vec![0u8; total];
    out[..4].copy_from_slice(&command_length.to_be_bytes());
    let written = cmd.encode(&mut out[4..]);
    debug_assert_eq!(written + 4, total, "rusmpp length() and encode() disagree");
    out
}

/// A `generic_nack` for a sequence number with a status (e.g. `ESME_RINVCMDID`
/// 0x03, `ESME_RINVCMDLEN` 0x02, `ESME_RSYSERR` 0x08).
pub fn generic_nack(sequence_number: u32, command_status: u32) -> Vec<u8> {
    header_only(GENERIC_NACK, command_status, sequence_number)
}

/// A PDU that is just the 16-byte header: SMPP 3.4 sends no body with a
/// response carrying a non-zero command_status, nor with generic_nack.
pub fn header_only(command_id: u32, command_status: u32, sequence_number: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN);
    for word in [
        HEADER_LEN as u32,
        command_id,
        command_status,
        sequence_number,
    ] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::pdus::{BindTransceiver, BindTransceiverResp, DeliverSm, SubmitSm, SubmitSmResp};
    use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
    use rusmpp::types::{COctetString, OctetString};
    use rusmpp::values::{EsmClass, InterfaceVersion, MessageState, Npi, Ton};
    use rusmpp::{CommandStatus, Pdu};
    use std::str::FromStr;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn cstr<const MIN: usize, const MAX: usize>(s: &str) -> COctetString<MIN, MAX> {
        COctetString::from_str(s).unwrap()
    }

    const RECEIPT_TEXT: &str = "id:0A1B2C3D sub:001 dlvrd:001 submit date:2403011200 \
                                done date:2403011201 stat:DELIVRD err:000 text:Hello";

    fn bind_transceiver() -> Command {
        let pdu = BindTransceiver::builder()
            .system_id(cstr("goniec"))
            .password(cstr("secret"))
            .system_type(cstr("SMS"))
            .interface_version(InterfaceVersion::Smpp3_4)
            .addr_ton(Ton::Unknown)
            .addr_npi(Npi::Unknown)
            .address_range(COctetString::empty())
            .build();
        Command::new(CommandStatus::EsmeRok, 1, pdu)
    }

    fn deliver_sm_receipt() -> Command {
        let pdu = DeliverSm::builder()
            .source_addr(cstr("48600100200"))
            .destination_addr(cstr("Goniec"))
            .esm_class(EsmClass::from(0x04))
            .short_message(OctetString::from_str(RECEIPT_TEXT).unwrap())
            .push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(cstr(
                "0A1B2C3D",
            )))
            .push_tlv(MessageDeliveryRequestTlvValue::MessageState(
                MessageState::Delivered,
            ))
            .build();
        Command::new(CommandStatus::EsmeRok, 7, pdu)
    }

    fn samples() -> Vec<Command> {
        vec![
            bind_transceiver(),
            Command::new(
                CommandStatus::EsmeRok,
                1,
                BindTransceiverResp::builder()
                    .system_id(cstr("SMSC"))
                    .sc_interface_version(Some(InterfaceVersion::Smpp3_4))
                    .build(),
            ),
            Command::new(
                CommandStatus::EsmeRok,
                2,
                SubmitSm::builder()
                    .source_addr_ton(Ton::Alphanumeric)
                    .source_addr(cstr("Goniec"))
                    .dest_addr_ton(Ton::International)
                    .dest_addr_npi(Npi::Isdn)
                    .destination_addr(cstr("48600100200"))
                    .short_message(OctetString::from_str("Hello from Goniec").unwrap())
                    .build(),
            ),
            Command::new(
                CommandStatus::EsmeRok,
                2,
                SubmitSmResp::builder().message_id(cstr("0A1B2C3D")).build(),
            ),
            deliver_sm_receipt(),
            Command::new(CommandStatus::EsmeRok, 3, Pdu::EnquireLink),
            Command::new(CommandStatus::EsmeRok, 3, Pdu::EnquireLinkResp),
            Command::new(CommandStatus::EsmeRok, 4, Pdu::Unbind),
            Command::new(CommandStatus::EsmeRinvcmdid, 5, Pdu::GenericNack),
        ]
    }

    fn enquire_link(seq: u32) -> Vec<u8> {
        encode(&Command::new(CommandStatus::EsmeRok, seq, Pdu::EnquireLink))
    }

    /// Splits everything in `buf`, decoding each frame.
    fn drain_all(buf: &mut Vec<u8>) -> Vec<Result<Command, Undecodable>> {
        let mut out = Vec::new();
        while let Some(frame) = split_frame(buf, &FrameLimits::default()).unwrap() {
            out.push(decode(&frame));
        }
        out
    }

    #[test]
    fn round_trip_every_sample() {
        for cmd in samples() {
            let bytes = encode(&cmd);
            let h = header(&bytes).unwrap();
            assert_eq!(h.command_length as usize, bytes.len());
            assert_eq!(h.command_id, u32::from(cmd.id()));
            assert_eq!(h.sequence_number, cmd.sequence_number());
            let mut buf = bytes.clone();
            let frame = split_frame(&mut buf, &FrameLimits::default())
                .unwrap()
                .unwrap();
            assert!(buf.is_empty());
            assert_eq!(frame, bytes);
            let back = decode(&frame).unwrap();
            assert_eq!(back, cmd, "{:?}", cmd.id());
            assert_eq!(encode(&back), bytes);
        }
    }

    #[test]
    fn bind_transceiver_carries_interface_version_0x34() {
        let bytes = encode(&bind_transceiver());
        // system_id, password, system_type, then interface_version, ton, npi, range.
        let tail = &bytes[bytes.len() - 4..];
        assert_eq!(tail, &[0x34, 0, 0, 0]);
        let Some(Pdu::BindTransceiver(b)) = decode(&bytes).unwrap().pdu().cloned() else {
            panic!("not a bind_transceiver");
        };
        assert_eq!(b.interface_version, InterfaceVersion::Smpp3_4);
    }

    #[test]
    fn receipt_fields_survive() {
        let cmd = decode(&encode(&deliver_sm_receipt())).unwrap();
        let Some(Pdu::DeliverSm(d)) = cmd.pdu() else {
            panic!("not a deliver_sm");
        };
        assert_eq!(d.short_message().as_ref(), RECEIPT_TEXT.as_bytes());
        let values: Vec<_> = d.tlvs().iter().filter_map(|t| t.value()).collect();
        assert!(values.iter().any(|v| matches!(
            v,
            rusmpp::tlvs::TlvValue::ReceiptedMessageId(id) if id.as_str() == "0A1B2C3D"
        )));
        assert!(values.iter().any(|v| matches!(
            v,
            rusmpp::tlvs::TlvValue::MessageState(MessageState::Delivered)
        )));
    }

    #[test]
    fn generic_nack_bytes() {
        let nack = generic_nack(0x0102_0304, ESME_RINVCMDLEN);
        assert_eq!(nack, hex("00000010800000000000000201020304"));
        let cmd = decode(&nack).unwrap();
        assert_eq!(cmd.id(), CommandId::GenericNack);
        assert_eq!(cmd.status(), CommandStatus::EsmeRinvcmdlen);
        assert_eq!(cmd.sequence_number(), 0x0102_0304);
    }

    #[test]
    fn two_frames_in_one_buffer() {
        let a = encode(&samples()[2]);
        let b = enquire_link(9);
        let mut buf = [a.clone(), b.clone()].concat();
        let limits = FrameLimits::default();
        assert_eq!(split_frame(&mut buf, &limits).unwrap().unwrap(), a);
        assert_eq!(buf, b);
        assert_eq!(split_frame(&mut buf, &limits).unwrap().unwrap(), b);
        assert!(buf.is_empty());
        assert_eq!(split_frame(&mut buf, &limits).unwrap(), None);
    }

    #[test]
    fn frame_across_three_reads() {
        let bytes = encode(&deliver_sm_receipt());
        let limits = FrameLimits::default();
        let mut buf = Vec::new();
        // Inside the header, inside the body, then the rest plus the start of the next.
        let next = enquire_link(8);
        let stream = [bytes.clone(), next.clone()].concat();
        let cuts = [0, 10, 40, bytes.len() + 5, stream.len()];
        let mut frames = Vec::new();
        for w in cuts.windows(2) {
            buf.extend_from_slice(&stream[w[0]..w[1]]);
            while let Some(f) = split_frame(&mut buf, &limits).unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames, vec![bytes, next]);
        assert!(buf.is_empty());
    }

    #[test]
    fn byte_by_byte_feeding() {
        let cmds = samples();
        let stream: Vec<u8> = cmds.iter().flat_map(encode).collect();
        let limits = FrameLimits::default();
        let mut buf = Vec::new();
        let mut decoded = Vec::new();
        for &byte in &stream {
            buf.push(byte);
            while let Some(f) = split_frame(&mut buf, &limits).unwrap() {
                decoded.push(decode(&f).unwrap());
            }
        }
        assert_eq!(decoded, cmds);
        assert!(buf.is_empty());
    }

    #[test]
    fn bad_lengths_are_rejected_without_allocating() {
        let limits = FrameLimits::default();
        for len in [15, 0, u32::MAX, DEFAULT_MAX_LEN + 1] {
            let mut buf = Vec::with_capacity(32);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&hex("000000040000000000000042"));
            let (before_len, before_cap) = (buf.len(), buf.capacity());
            let err = split_frame(&mut buf, &limits).unwrap_err();
            assert_eq!(
                err,
                FrameError::BadLength {
                    len,
                    max: DEFAULT_MAX_LEN,
                    sequence_number: 0x42
                }
            );
            assert_eq!((buf.len(), buf.capacity()), (before_len, before_cap));
            assert_eq!(err.generic_nack(), generic_nack(0x42, ESME_RINVCMDLEN));
        }
        // The maximum itself is fine: it just waits for the body.
        let mut buf = DEFAULT_MAX_LEN.to_be_bytes().to_vec();
        buf.extend_from_slice(&hex("000000040000000000000042"));
        let cap = buf.capacity();
        assert_eq!(split_frame(&mut buf, &limits).unwrap(), None);
        assert_eq!(buf.capacity(), cap);
        // A configured maximum below the default is honoured.
        let mut buf = encode(&deliver_sm_receipt());
        let small = FrameLimits { max_len: 64 };
        assert!(matches!(
            split_frame(&mut buf, &small),
            Err(FrameError::BadLength { max: 64, .. })
        ));
    }

    #[test]
    fn r1_c_string_cannot_read_into_the_next_frame() {
        let mut buf = [
            hex("00000014800000090000000000000001534d5343"),
            enquire_link(2),
        ]
        .concat();
        let results = drain_all(&mut buf);
        assert_eq!(results.len(), 2);
        match &results[0] {
            Err(u) => {
                assert_eq!(u.header.command_id, 0x8000_0009);
                assert_eq!(u.header.sequence_number, 1);
            }
            Ok(cmd) => assert_eq!(cmd.id(), CommandId::BindTransceiverResp),
        }
        let next = results[1].as_ref().unwrap();
        assert_eq!(next.id(), CommandId::EnquireLink);
        assert_eq!(next.sequence_number(), 2);
    }

    #[test]
    fn r2_trailing_bytes_stay_in_their_frame() {
        let mut buf = [
            hex("0000001400000015000000000000000101020304"),
            enquire_link(2),
        ]
        .concat();
        let results = drain_all(&mut buf);
        assert_eq!(results.len(), 2);
        let u = results[0].as_ref().unwrap_err();
        assert_eq!(u.header.command_id, 0x15);
        assert_eq!(u.header.sequence_number, 1);
        assert_eq!(u.status, ESME_RINVCMDLEN);
        let next = results[1].as_ref().unwrap();
        assert_eq!(next.id(), CommandId::EnquireLink);
        assert_eq!(next.sequence_number(), 2);
    }

    #[test]
    fn r3_receipted_message_id_without_nul_is_undecodable_with_its_header() {
        // A valid deliver_sm without TLVs, plus receipted_message_id "ABC123" lacking its NUL.
        let mut base = deliver_sm_receipt();
        if let Some(Pdu::DeliverSm(d)) = base.pdu().cloned() {
            let mut d = d;
            d.clear_tlvs();
            base.set_pdu(d);
        }
        let mut frame = encode(&base);
        assert!(decode(&frame).is_ok(), "the PDU without the TLV is fine");
        frame.extend_from_slice(&hex("001e0006414243313233"));
        let len = frame.len() as u32;
        frame[..4].copy_from_slice(&len.to_be_bytes());

        let mut buf = [frame.clone(), enquire_link(8)].concat();
        let results = drain_all(&mut buf);
        assert_eq!(results.len(), 2);
        let u = results[0].as_ref().unwrap_err();
        assert_eq!(
            u.header,
            Header {
                command_length: len,
                command_id: 0x0000_0005,
                command_status: 0,
                sequence_number: 7,
            }
        );
        assert!(!u.reason.is_empty());
        assert_eq!(results[1].as_ref().unwrap().id(), CommandId::EnquireLink);
    }

    #[test]
    fn odd_frames_that_still_decode_or_fail_cleanly() {
        // submit_sm_resp without a body (error status): legal, pdu is None.
        let cmd = decode(&hex("00000010800000040000005800000009")).unwrap();
        assert_eq!(cmd.id(), CommandId::SubmitSmResp);
        assert_eq!(cmd.status(), CommandStatus::EsmeRthrottled);
        assert!(cmd.pdu().is_none());
        // submit_sm without a body: a request cannot do that.
        let u = decode(&hex("00000010000000040000000000000009")).unwrap_err();
        assert_eq!((u.header.sequence_number, u.status), (9, ESME_RINVCMDLEN));
        // Unknown command_id: decodes, for a generic_nack with ESME_RINVCMDID.
        let cmd = decode(&hex("00000014000001230000000000000009deadbeef")).unwrap();
        assert_eq!(cmd.id(), CommandId::Other(0x123));
        let cmd = decode(&hex("00000010000001230000000000000009")).unwrap();
        assert_eq!(cmd.id(), CommandId::Other(0x123));
        // A slice that is not one whole frame.
        assert!(decode(&hex("0000001000000015")).is_err());
        assert!(decode(&[enquire_link(1), vec![0]].concat()).is_err());
        assert!(decode(&[]).is_err());
    }
    use crate::test_rng::TestRng as Rng;

    #[test]
    fn randomized_buffers_never_panic_or_grow() {
        const COMMAND_IDS: [u32; 20] = [
            0x0000_0001,
            0x0000_0002,
            0x0000_0003,
            0x0000_0004,
            0x0000_0005,
            0x0000_0006,
            0x0000_0009,
            0x0000_000B,
            0x0000_0015,
            0x0000_0103,
            0x0000_0021,
            0x8000_0000,
            0x8000_0001,
            0x8000_0004,
            0x8000_0005,
            0x8000_0009,
            0x8000_0015,
            0x8000_0103,
            0x0000_0102,
            0x0000_0111,
        ];
        let mut corpus: Vec<Vec<u8>> = samples().iter().map(encode).collect();
        corpus.push(hex("00000014800000090000000000000001534d5343"));
        corpus.push(hex("0000001400000015000000000000000101020304"));
        let limits = FrameLimits { max_len: 1024 };
        let mut rng = Rng::seeded(
            0x9E37_79B9_7F4A_7C15,
            "randomized_buffers_never_panic_or_grow",
        );
        let (mut frames, mut decoded) = (0usize, 0usize);

        for _ in 0..50_000 {
            let input: Vec<u8> = match rng.below(4) {
                // Pure noise.
                0 => (0..rng.below(200)).map(|_| rng.byte()).collect(),
                // Valid frames, concatenated, with bytes flipped.
                1 => {
                    let mut v: Vec<u8> = (0..1 + rng.below(3))
                        .flat_map(|_| corpus[rng.below(corpus.len())].clone())
                        .collect();
                    for _ in 0..1 + rng.below(4) {
                        let i = rng.below(v.len());
                        v[i] ^= 1 << rng.below(8);
                    }
                    if rng.below(4) == 0 {
                        v.truncate(rng.below(v.len() + 1));
                    }
                    v
                }
                // A valid frame whose command_length lies.
                2 => {
                    let mut v = corpus[rng.below(corpus.len())].clone();
                    let len = match rng.below(3) {
                        0 => rng.next() as u32,
                        1 => rng.below(limits.max_len as usize + 64) as u32,
                        _ => (v.len() as u32)
                            .saturating_add(rng.below(9) as u32)
                            .saturating_sub(4),
                    };
                    v[..4].copy_from_slice(&len.to_be_bytes());
                    v.extend((0..rng.below(40)).map(|_| rng.byte()));
                    v
                }
                // A well-framed PDU of a known type with a random body.
                _ => {
                    let body_len = rng.below(120);
                    let mut v = ((HEADER_LEN + body_len) as u32).to_be_bytes().to_vec();
                    v.extend_from_slice(&COMMAND_IDS[rng.below(COMMAND_IDS.len())].to_be_bytes());
                    v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
                    v.extend((0..body_len).map(|_| match rng.below(3) {
                        0 => 0,
                        1 => b'0' + rng.below(10) as u8,
                        _ => rng.byte(),
                    }));
                    v
                }
            };

            let mut buf = Vec::new();
            let mut fed = 0;
            'feed: while fed < input.len() {
                let n = 1 + rng.below(64).min(input.len() - fed - 1);
                buf.extend_from_slice(&input[fed..fed + n]);
                fed += n;
                loop {
                    let (len_before, cap_before) = (buf.len(), buf.capacity());
                    match split_frame(&mut buf, &limits) {
                        Ok(None) => {
                            assert_eq!((buf.len(), buf.capacity()), (len_before, cap_before));
                            break;
                        }
                        Ok(Some(frame)) => {
                            frames += 1;
                            let h = header(&frame).unwrap();
                            assert_eq!(frame.len(), h.command_length as usize);
                            assert!(frame.len() >= HEADER_LEN && frame.len() <= 1024);
                            assert_eq!(buf.len() + frame.len(), len_before);
                            assert_eq!(buf.capacity(), cap_before);
                            match decode(&frame) {
                                Ok(cmd) => {
                                    decoded += 1;
                                    assert_eq!(cmd.sequence_number(), h.sequence_number);
                                    let _ = encode(&cmd);
                                }
                                Err(u) => assert_eq!(u.header, h),
                            }
                        }
                        Err(_) => {
                            assert_eq!((buf.len(), buf.capacity()), (len_before, cap_before));
                            break 'feed;
                        }
                    }
                }
                assert!(buf.len() <= input.len());
            }
        }
        // The generator must exercise both outcomes, not just noise.
        assert!(frames > 10_000, "only {frames} frames");
        assert!(decoded > 1_000, "only {decoded} decoded");
    }
}
