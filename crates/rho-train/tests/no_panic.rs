//! Property tests: whatever a user writes into a recipe or an index list, rho answers with a
//! value or an error, never a panic.

use std::path::PathBuf;

use proptest::prelude::*;
use rho_train::dataset::{DatasetSpec, IndexFormat};
use rho_train::Recipe;

fn tiny_recipe() -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny_byol_cpu.toml"),
    )
    .unwrap()
}

/// Keys whose values drive sizes, schedules and loops.
const KEYS: &[&str] = &[
    "batch",
    "epochs",
    "seed",
    "data.rho",
    "data.frames",
    "data.stride",
    "data.crop",
    "data.short_side",
    "data.workers",
    "data.max_timespan_s",
    "optim.base_lr",
    "optim.reference_batch",
    "optim.weight_decay",
    "optim.warmup_epochs",
    "optim.accumulation",
    "method.temperature",
    "method.momentum_base",
    "method.proj_dim",
    "method.proj_layers",
    "method.queue_len",
    "model.sync_bn",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        Just("nan".to_string()),
        Just("-inf".to_string()),
        Just("0".to_string()),
        Just("\"all\"".to_string()),
        "[a-z]{0,6}".prop_map(|s| format!("\"{s}\"")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_override_of_a_recipe_is_a_value_or_an_error(
        sets in prop::collection::vec((prop::sample::select(KEYS), value()), 1..4)
    ) {
        let sets: Vec<String> = sets.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if let Ok(r) = Recipe::parse(&tiny_recipe(), "t", &sets) {
            // What validates can be planned without panicking.
            let _ = r.schedule();
            let _ = r.micro_batch(1, 1);
            let _ = rho_train::memory::estimate(&r);
        }
    }

    #[test]
    fn any_index_text_reads_or_errors(text in "[ -~\\t\\n,]{0,400}") {
        let dir = std::env::temp_dir().join(format!("rho-prop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list = dir.join("list.txt");
        std::fs::write(&list, &text).unwrap();
        for format in [IndexFormat::Auto, IndexFormat::List, IndexFormat::Frames, IndexFormat::Kinetics] {
            let _ = DatasetSpec::new(&list, format).with_prefix(&dir).load();
        }
    }
}
