//! Files compiled into the binary by `build.rs`: the vault template, the demo vault and the built-in
//! themes, and the control plane.

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
