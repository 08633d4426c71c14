//! vsh
