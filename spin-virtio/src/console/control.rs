//! The console's control messages: `struct virtio_console_control` (id, event,
//! value; 8 bytes little-endian), optionally followed by a payload (the name
//! of PORT_NAME).

/// One control message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlMessage {
    /// Port id.
    pub id: u32,
    /// Event (`VIRTIO_CONSOLE_*`).
    pub event: u16,
    /// Event value.
    pub value: u16,
    /// Bytes after the header (a port name).
    pub payload: Vec<u8>,
}

impl ControlMessage {
    /// Length of the fixed header.
    pub const HEADER_LEN: usize = 8;

    /// A message without payload.
    pub fn new(id: u32, event: u16, value: u16) -> Self {
        Self {
            id,
            event,
            value,
            payload: Vec::new(),
        }
    }

    /// The message as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::HEADER_LEN + self.payload.len());
        v.extend_from_slice(&self.id.to_le_bytes());
        v.extend_from_slice(&self.event.to_le_bytes());
        v.extend_from_slice(&self.value.to_le_bytes());
        v.extend_from_slice(&self.payload);
        v
    }

    /// Parses a message; `None` if shorter than the header.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let h = bytes.get(..Self::HEADER_LEN)?;
        Some(Self {
            id: u32::from_le_bytes(h[0..4].try_into().ok()?),
            event: u16::from_le_bytes([h[4], h[5]]),
            value: u16::from_le_bytes([h[6], h[7]]),
            payload: bytes[Self::HEADER_LEN..].to_vec(),
        })
    }
}
