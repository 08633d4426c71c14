//! Host plumbing shared by virtmesh services.
pub mod fs;
pub mod netlink;
