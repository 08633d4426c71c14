//! Service runtime.
