//! A tonic codec for `prost_reflect::DynamicMessage`, so the gateway can call any method of the
//! descriptor set without generated types: requests are encoded with `prost::Message::encode`, and
//! responses are kept as the bytes they arrived as, for [`super::response`] to write as JSON against
//! the method's output descriptor.

use bytes::{Buf as _, Bytes};
use prost::Message as _;
use prost_reflect::DynamicMessage;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Encodes any [`DynamicMessage`]; "decodes" a response into its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct DynamicCodec;

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = Bytes;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DynamicEncoder;

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        // An `EncodeBuf` grows as needed, so this cannot run out of room; map the error all the same.
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the request: {e}")))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DynamicDecoder;

impl Decoder for DynamicDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}
