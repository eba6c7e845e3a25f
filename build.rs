//! The rules, dictionaries and labelled corpus are built into the binary with `include_dir!`, which cargo
//! does not watch: rebuild when any of them changes.

fn main() {
    for dir in ["intents", "dictionaries", "tests/corpus"] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
