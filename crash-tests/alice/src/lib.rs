//! `atomwrite-alice`: a crash-state explorer in the spirit of ALICE ("All File Systems Are
//! Not Created Equal", OSDI 2014) for atomwrite's write path.
//!
//! 1. **Record** a program's file-system calls with strace ([`mod@record`], [`mod@strace`]) into
//!    an abstract operation log ([`oplog`]).
//! 2. **Enumerate** every on-disk state a crash could leave after each prefix of the log
//!    under a conservative persistence model ([`mod@explore`]; the model is in `MODEL.md`).
//! 3. **Check** the atomic-replace invariant in each state ([`explore::Invariant`]).

pub mod explore;
pub mod oplog;
pub mod record;
pub mod strace;

pub use explore::{Invariant, Limits, Report, explore};
pub use oplog::{Fs, Kind, LogBuilder, Op, OpLog};
pub use record::{Recording, Run, record, strace_available};
