//! Secret commands (tools/virsh-secret.c).

use virtmesh_proto::v1::{self, SecretUsageType};

use super::table::Table;
use super::util::{base64_decode, base64_encode, read_file, read_file_bytes};
use super::{CmdError, CmdResult, Ctl};
use crate::connection::collect;

/// virSecretUsageTypeToString.
pub fn usage_type_str(t: i32) -> &'static str {
    match SecretUsageType::try_from(t) {
        Ok(SecretUsageType::SecretUsageVolume) => "volume",
        Ok(SecretUsageType::SecretUsageCeph) => "ceph",
        Ok(SecretUsageType::SecretUsageIscsi) => "iscsi",
        Ok(SecretUsageType::SecretUsageTls) => "tls",
        Ok(SecretUsageType::SecretUsageVtpm) => "vtpm",
        Ok(SecretUsageType::SecretUsageNone) | Err(_) => "none",
    }
}

/// `secret-list`: sorted by UUID; usage is `<type> <id>` or `Unused`.
pub fn list_text(secrets: &[v1::SecretSummary], header: bool) -> String {
    let mut sorted: Vec<&v1::SecretSummary> = secrets.iter().collect();
    sorted.sort_by_cached_key(|s| s.uuid.to_lowercase());
    let mut t = Table::new(&["UUID", "Usage"]);
    for s in sorted {
        let usage = if s.usage_type == SecretUsageType::SecretUsageNone as i32 {
            "Unused".to_owned()
        } else {
            format!("{} {}", usage_type_str(s.usage_type), s.usage_id)
        };
        t.push([s.uuid.clone(), usage]);
    }
    t.render(header)
}

fn secret_ref(uuid: &str) -> v1::SecretRef {
    v1::SecretRef {
        key: Some(v1::secret_ref::Key::Uuid(uuid.to_owned())),
    }
}

/// virshCommandOptSecret: secrets are looked up by UUID only.
async fn lookup(ctl: &Ctl, uuid: &str) -> Result<v1::SecretSummary, CmdError> {
    ctl.conn
        .secret()
        .lookup(secret_ref(uuid))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| {
            CmdError::ctx(
                format!("failed to get secret '{uuid}'"),
                crate::Error::from(e),
            )
        })
}

pub async fn list(ctl: &Ctl, req: v1::ListSecretsRequest) -> CmdResult {
    let resp = ctl
        .conn
        .secret()
        .list(req)
        .await
        .map_err(|e| CmdError::ctx("Failed to list node secrets", crate::Error::from(e)))?;
    let secrets = collect(resp)
        .await
        .map_err(|e| CmdError::ctx("Failed to list node secrets", e))?;
    ctl.print(&list_text(&secrets, !ctl.quiet));
    Ok(())
}

pub async fn define(ctl: &Ctl, file: &str, validate: bool) -> CmdResult {
    let xml = read_file(file).map_err(CmdError::msg)?;
    let s = ctl
        .conn
        .secret()
        .define_xml(v1::DefineXmlRequest { xml, validate })
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to set attributes from {file}"),
                crate::Error::from(e),
            )
        })?
        .into_inner();
    ctl.extra(&format!("Secret {} created\n", s.uuid));
    Ok(())
}

pub async fn dumpxml(ctl: &Ctl, uuid: &str) -> CmdResult {
    let s = lookup(ctl, uuid).await?;
    let xml = ctl
        .conn
        .secret()
        .get_xml_desc(secret_ref(&s.uuid))
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .xml;
    ctl.print(&xml);
    Ok(())
}

pub async fn undefine(ctl: &Ctl, uuid: &str) -> CmdResult {
    let s = lookup(ctl, uuid).await?;
    ctl.conn
        .secret()
        .undefine(secret_ref(&s.uuid))
        .await
        .map_err(|e| {
            CmdError::ctx(
                format!("Failed to delete secret {uuid}"),
                crate::Error::from(e),
            )
        })?;
    ctl.extra(&format!("Secret {uuid} deleted\n"));
    Ok(())
}

/// The bytes to store, from `--base64` or `--file` (base64 text unless
/// `--plain`).
pub fn value_from(
    base64: Option<&str>,
    file_bytes: Option<Vec<u8>>,
    plain: bool,
) -> Result<Vec<u8>, CmdError> {
    if let Some(b) = base64 {
        return Ok(base64_decode(b));
    }
    match file_bytes {
        Some(bytes) if plain => Ok(bytes),
        Some(bytes) => Ok(base64_decode(&String::from_utf8_lossy(&bytes))),
        None => Err(CmdError::msg("Input secret value is missing")),
    }
}

pub async fn set_value(
    ctl: &Ctl,
    uuid: &str,
    file: Option<&str>,
    plain: bool,
    base64: Option<&str>,
) -> CmdResult {
    let s = lookup(ctl, uuid).await?;
    if base64.is_some() {
        // virsh warns, then goes on.
        ctl.error_now("Passing secret value as command-line argument is insecure!");
    }
    let file_bytes = match file {
        Some(f) => Some(read_file_bytes(f).map_err(CmdError::msg)?),
        None => None,
    };
    let value = value_from(base64, file_bytes, plain)?;
    ctl.conn
        .secret()
        .set_value(v1::SetSecretValueRequest {
            secret: Some(secret_ref(&s.uuid)),
            value,
        })
        .await
        .map_err(|e| CmdError::ctx("Failed to set secret value", crate::Error::from(e)))?;
    ctl.extra("Secret value set\n");
    Ok(())
}

pub async fn get_value(ctl: &Ctl, uuid: &str, plain: bool) -> CmdResult {
    let s = lookup(ctl, uuid).await?;
    let value = ctl
        .conn
        .secret()
        .get_value(secret_ref(&s.uuid))
        .await
        .map_err(crate::Error::from)?
        .into_inner()
        .value;
    if plain {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(&value)
            .and_then(|()| out.flush())
            .map_err(|_| CmdError::msg("failed to write secret"))?;
    } else {
        // No newline: virsh prints the base64 text bare and relies on the
        // blank line after each command.
        ctl.print(&base64_encode(&value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_list_layout() {
        let s = [
            v1::SecretSummary {
                uuid: "c7a5fdbd-edaf-9455-926a-d65c16db1809".into(),
                usage_type: SecretUsageType::SecretUsageVolume as i32,
                usage_id: "/var/lib/libvirt/images/x.img".into(),
                ephemeral: false,
                private: false,
            },
            v1::SecretSummary {
                uuid: "0a5a6b47-1111-4c3b-9d35-63f2bd5c3e2e".into(),
                usage_type: SecretUsageType::SecretUsageNone as i32,
                usage_id: String::new(),
                ephemeral: false,
                private: false,
            },
        ];
        assert_eq!(
            list_text(&s, true),
            " UUID                                   Usage\n\
             ------------------------------------------------------------------------------\n \
             0a5a6b47-1111-4c3b-9d35-63f2bd5c3e2e   Unused\n \
             c7a5fdbd-edaf-9455-926a-d65c16db1809   volume /var/lib/libvirt/images/x.img\n"
        );
    }

    #[test]
    fn secret_values() {
        assert_eq!(
            value_from(Some("c2VjcmV0"), None, false).ok(),
            Some(b"secret".to_vec())
        );
        assert_eq!(
            value_from(None, Some(b"c2VjcmV0\n".to_vec()), false).ok(),
            Some(b"secret".to_vec())
        );
        assert_eq!(
            value_from(None, Some(b"raw".to_vec()), true).ok(),
            Some(b"raw".to_vec())
        );
        assert_eq!(
            value_from(None, None, false).err().map(|e| e.lines),
            Some(vec!["Input secret value is missing".to_owned()])
        );
    }
}
