//! Files compiled into the binary by `build.rs`: the vault template and the demo vault.

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
