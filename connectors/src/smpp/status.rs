//! SMPP 3.4 `command_status` values used here, and their names for logs and errors
//! (one table, shared by the framer, the session, the connector and the simulator).

pub const ESME_ROK: u32 = 0x0000_0000;
/// Message length is invalid (also: command_length does not match the body).
pub const ESME_RINVCMDLEN: u32 = 0x0000_0002;
/// Invalid command ID.
pub const ESME_RINVCMDID: u32 = 0x0000_0003;
/// Incorrect bind status for the given command.
pub const ESME_RINVBNDSTS: u32 = 0x0000_0004;
/// ESME already in bound state.
pub const ESME_RALYBND: u32 = 0x0000_0005;
/// System error.
pub const ESME_RSYSERR: u32 = 0x0000_0008;
/// Message ID is invalid (some SMSCs answer a `query_sm` for an id they do not know so).
pub const ESME_RINVMSGID: u32 = 0x0000_000C;
/// Bind failed.
pub const ESME_RBINDFAIL: u32 = 0x0000_000D;
/// Invalid password.
pub const ESME_RINVPASWD: u32 = 0x0000_000E;
/// Invalid system_id.
pub const ESME_RINVSYSID: u32 = 0x0000_000F;
/// Message queue full.
pub const ESME_RMSGQFUL: u32 = 0x0000_0014;
/// Throttling error (the ESME exceeded its allowed message limits).
pub const ESME_RTHROTTLED: u32 = 0x0000_0058;
/// `query_sm` failed: the SMSC does not know the message (or no longer).
pub const ESME_RQUERYFAIL: u32 = 0x0000_0067;
/// ESME receiver temporary application error: our answer to a `deliver_sm` we cannot
/// take now; the SMSC keeps it and delivers it again later.
pub const ESME_RX_T_APPN: u32 = 0x0000_0064;

/// Readable names of the statuses operators meet most.
pub fn name(s: u32) -> &'static str {
    match s {
        0x00 => "ESME_ROK",
        0x01 => "ESME_RINVMSGLEN",
        0x02 => "ESME_RINVCMDLEN",
        0x03 => "ESME_RINVCMDID",
        0x04 => "ESME_RINVBNDSTS",
        0x05 => "ESME_RALYBND",
        0x08 => "ESME_RSYSERR",
        0x0A => "ESME_RINVSRCADR",
        0x0B => "ESME_RINVDSTADR",
        0x0C => "ESME_RINVMSGID",
        0x0D => "ESME_RBINDFAIL",
        0x0E => "ESME_RINVPASWD",
        0x0F => "ESME_RINVSYSID",
        0x14 => "ESME_RMSGQFUL",
        0x45 => "ESME_RSUBMITFAIL",
        0x58 => "ESME_RTHROTTLED",
        0x61 => "ESME_RINVSCHED",
        0x62 => "ESME_RINVEXPIRY",
        0x64 => "ESME_RX_T_APPN",
        0x67 => "ESME_RQUERYFAIL",
        _ => "SMPP error",
    }
}
