//! Host plumbing shared by virtmesh services.
pub mod bandwidth;
pub mod dirs;
pub mod fs;
pub mod netlink;
