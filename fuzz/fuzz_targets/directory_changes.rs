//! Any record a service may produce to the directory's topics: bytes after the Confluent
//! frame read as a change of `herald.directory.changes`, and a value of `herald.templates`.
//! A change is refused with a reason per field, or applies as a whole (a checked device
//! becomes a stored one); a template value is refused with
//! a reason or checked; never a panic.
#![no_main]

use herald_enricher::changes::{self, check, device_of, user_after};
use herald_enricher::templates::Renderer;
use herald_schemas::codec::decode_body;
use herald_schemas::{DirectoryChange, DirectoryOp};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn renderer() -> &'static Renderer {
    static RENDERER: OnceLock<Renderer> = OnceLock::new();
    RENDERER.get_or_init(Renderer::default)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    if which % 2 == 0 {
        change(body);
    } else {
        template(body);
    }
});

fn change(body: &[u8]) {
    let Ok(change) = decode_body::<DirectoryChange>(body) else { return };
    let errors = check(&change);
    if !errors.is_empty() {
        assert!(errors.iter().all(|e| !e.field.is_empty() && !e.reason.is_empty()), "{errors:?}");
        assert!(!changes::describe(&errors).is_empty());
        return;
    }
    match change.op {
        DirectoryOp::PutUser | DirectoryOp::PatchUser => {
            let Some(fields) = &change.user else { panic!("a checked user change has fields") };
            assert_eq!(user_after(&change.user_id, fields, None).user_id, change.user_id);
        }
        DirectoryOp::PutDevice => {
            let device = change.device.as_ref().and_then(device_of);
            assert!(device.is_some(), "a checked device is stored: {change:?}");
        }
        _ => {}
    }
}

fn template(value: &[u8]) {
    match changes::templates::parse("fuzz", value) {
        Err(reason) => assert!(!reason.is_empty()),
        Ok(None) => {}
        Ok(Some(variants)) => {
            let errors = changes::templates::check("fuzz", &variants, renderer());
            assert!(errors.iter().all(|e| !e.reason.is_empty()), "{errors:?}");
        }
    }
}
