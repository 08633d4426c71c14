//! libvirt XML documents.
