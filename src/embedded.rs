//! Files compiled into the binary by `build.rs`: the vault template, the demo vault and the built-in
//! themes.

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
