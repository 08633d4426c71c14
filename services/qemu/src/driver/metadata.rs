//! Title, description and namespaced metadata elements
//! (virDomainGetMetadata / virDomainSetMetadata), live and/or config.

use super::*;
use pb::MetadataType as M;

fn no_metadata() -> VirtError {
    err::qemu(
        ErrorCode::NoDomainMetadata,
        "metadata not found: Requested metadata element is not present",
    )
}

fn tag(ty: M) -> &'static str {
    match ty {
        M::Title => "title",
        _ => "description",
    }
}

impl QemuDriver {
    /// The definition an impact selects for reading: the config with
    /// `config`, else the live one when running, else the config.
    pub fn get_metadata(&self, req: &pb::GetMetadataRequest) -> Result<String> {
        let v = self.lookup(req.domain.as_ref())?;
        let impact = req.impact.unwrap_or_default();
        if impact.live && impact.config {
            return Err(err::qemu(
                ErrorCode::InvalidArg,
                "invalid argument: flags 'affect live' and 'affect config' are mutually exclusive",
            ));
        }
        if impact.live && !v.is_active() {
            return Err(err::not_running());
        }
        let def = match (&v.config, impact.config) {
            (Some(c), true) => c,
            _ => &v.def,
        };
        let ty = M::try_from(req.r#type).unwrap_or(M::Description);
        match ty {
            M::Element => def
                .metadata_element(&req.uri)
                .map(|e| e.to_xml().trim_end().to_owned())
                .ok_or_else(no_metadata),
            _ => def.text_meta(tag(ty)).ok_or_else(no_metadata),
        }
    }

    pub async fn set_metadata(&self, req: &pb::SetMetadataRequest) -> Result<()> {
        let ty = M::try_from(req.r#type).unwrap_or(M::Description);
        let element = match ty {
            M::Element if req.value.is_empty() => None,
            M::Element => {
                if req.key.is_empty() || req.uri.is_empty() {
                    return Err(err::qemu(
                        ErrorCode::InvalidArg,
                        "invalid argument: metadata key and uri are required for an element",
                    ));
                }
                Some(
                    virtmesh_conf::xml::parse(&req.value)
                        .map_err(|e| err::conf(virtmesh_conf::ConfError::from(e)))?,
                )
            }
            M::Title if req.value.contains('\n') => {
                return Err(err::qemu(
                    ErrorCode::InvalidArg,
                    "invalid argument: title can't contain newlines",
                ));
            }
            _ => None,
        };
        let apply = |def: &mut DomainDef| match ty {
            M::Element => def.set_metadata_element(&req.uri, &req.key, element.clone()),
            _ => def.set_text_meta(tag(ty), Some(req.value.as_str())),
        };
        let dom = self.find(req.domain.as_ref())?;
        let _job = dom.job.lock().await;
        let mut st = dom.lock();
        let t = super::tune::targets(req.impact.as_ref(), &st)?;
        if t.live
            && let Some(l) = st.live.as_mut()
        {
            apply(&mut l.def);
        }
        if t.config
            && let Some(mut def) = st.config.clone()
        {
            apply(&mut def);
            self.inner.store.save(&def).map_err(err::state)?;
            st.config = Some(def);
        }
        let name = st.name.clone();
        drop(st);
        let nsuri = if ty == M::Element {
            req.uri.as_str()
        } else {
            ""
        };
        self.inner
            .events
            .metadata(&dom.uuid, &name, ty as i32, nsuri);
        Ok(())
    }
}
