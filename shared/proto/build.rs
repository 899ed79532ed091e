//! Compiles `proto/` with protox (pure Rust: no protoc on the machine) into Rust code and an encoded
//! descriptor set.
//!
//! The descriptor bytes come from `Compiler::encode_file_descriptor_set`, never from re-encoding a
//! decoded `prost_types::FileDescriptorSet`: prost drops the extension fields it does not know, and
//! with them every `google.api.http` rule the gateway is built from (rust-anchors §B3).

use std::path::PathBuf;

use prost::Message as _;

const FILES: &[&str] = &[
    "streambank/v1/users.proto",
    "streambank/v1/accounts.proto",
    "streambank/v1/transfers.proto",
    "streambank/v1/notifications.proto",
];

fn main() -> anyhow::Result<()> {
    let proto_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    let mut compiler = protox::Compiler::new([&proto_dir])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(FILES)?;
    let bytes = compiler.encode_file_descriptor_set();

    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("streambank_descriptor.bin"), &bytes)?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(prost_types::FileDescriptorSet::decode(bytes.as_slice())?)?;
    Ok(())
}
