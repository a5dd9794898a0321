//! The committed CRDs match the Rust types.

#[test]
fn committed_crds_match_the_types() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/eol.dev_v1alpha1.yaml");
    let committed = std::fs::read_to_string(&path).expect("crds/eol.dev_v1alpha1.yaml exists");
    let generated = eol_operator::crds_yaml().expect("CRDs render");
    assert!(
        committed == generated,
        "crds/ drifted from the Rust types: run `cargo run -p eol-operator -- crd > crds/eol.dev_v1alpha1.yaml`"
    );
}
