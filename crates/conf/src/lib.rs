//! libvirt XML documents <-> a typed Rust model (libvirt's conf/).
//!
//! [`xml`] is a generic element tree with libvirt's formatting rules; the
//! other modules turn a parsed tree into each document kind's canonical
//! form and expose the fields drivers need.  Nothing here panics on input:
//! every failure is a [`ConfError`] carrying libvirt's message.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod bandwidth;
pub mod devices;
pub mod domain;
pub mod domain_misc;
pub mod error;
pub mod misc;
pub mod network;
pub mod nwfilter;
pub mod snapshot;
pub mod storage;
pub mod units;
pub mod xml;

pub use error::{ConfError, ConfErrorKind};
pub use xml::{Element, Node};
