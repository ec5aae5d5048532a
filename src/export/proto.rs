//! A minimal protobuf encoder: just the wire types TensorBoard's event
//! files need (varint, 64-bit, length-delimited, 32-bit), written by field
//! number. Messages are built bottom-up: a nested message is encoded first
//! and embedded as bytes.

/// An encoded message under construction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message(Vec<u8>);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Message {
    pub fn new() -> Message {
        Message::default()
    }

    fn key(&mut self, field: u32, wire: u8) {
        varint(&mut self.0, (u64::from(field) << 3) | u64::from(wire));
    }

    /// A varint field (int32, int64, uint64, bool, enum). Negative int64s
    /// take ten bytes, as protobuf specifies.
    pub fn varint(mut self, field: u32, v: i64) -> Message {
        self.key(field, 0);
        varint(&mut self.0, v as u64);
        self
    }

    /// A `double` field.
    pub fn double(mut self, field: u32, v: f64) -> Message {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A `float` field.
    pub fn float(mut self, field: u32, v: f32) -> Message {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A `bytes` field.
    pub fn bytes(mut self, field: u32, b: &[u8]) -> Message {
        self.key(field, 2);
        varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    /// A `string` field.
    pub fn string(self, field: u32, s: &str) -> Message {
        self.bytes(field, s.as_bytes())
    }

    /// An embedded message field.
    pub fn message(self, field: u32, m: &Message) -> Message {
        self.bytes(field, &m.0)
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_examples_of_the_protobuf_docs() {
        // "Test1.a = 150" -> 08 96 01.
        assert_eq!(Message::new().varint(1, 150).as_bytes(), [0x08, 0x96, 0x01]);
        // "Test2.b = testing" -> 12 07 74 65 73 74 69 6e 67.
        assert_eq!(
            Message::new().string(2, "testing").as_bytes(),
            [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']
        );
        // Embedded: "Test3.c = Test1{150}" -> 1a 03 08 96 01.
        let inner = Message::new().varint(1, 150);
        assert_eq!(
            Message::new().message(3, &inner).as_bytes(),
            [0x1a, 0x03, 0x08, 0x96, 0x01]
        );
        let d = Message::new().double(1, 1.5);
        assert_eq!(d.as_bytes()[0], 0x09);
        assert_eq!(&d.as_bytes()[1..], 1.5f64.to_le_bytes());
        let f = Message::new().float(2, 0.25);
        assert_eq!(f.as_bytes()[0], 0x15);
        assert_eq!(Message::new().varint(1, -1).as_bytes().len(), 11);
    }
}
