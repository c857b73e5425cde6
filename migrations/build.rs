//! Registers every `src/mNNNN_<name>.rs` as a migration, in name order: a
//! new migration is one new file (see `src/lib.rs`).

use std::fmt::Write as _;
use std::{env, fs, path::PathBuf};

fn main() {
    let src = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default()).join("src");
    println!("cargo:rerun-if-changed={}", src.display());
    let mut names: Vec<String> = fs::read_dir(&src)
        .map(|dir| {
            dir.filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.starts_with('m') && name.as_bytes().get(1).is_some_and(u8::is_ascii_digit))
                .filter_map(|name| name.strip_suffix(".rs").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::new();
    for name in &names {
        let path = src.join(format!("{name}.rs"));
        let _ = writeln!(out, "#[path = {:?}]\nmod {name};", path.display().to_string());
    }
    out.push_str("\n/// Every migration, oldest first (one per `src/mNNNN_*.rs`).\nfn all() -> Vec<Box<dyn MigrationTrait>> {\n    vec![\n");
    for name in &names {
        let _ = writeln!(out, "        Box::new({name}::Migration),");
    }
    out.push_str("    ]\n}\n");
    let dest = PathBuf::from(env::var("OUT_DIR").unwrap_or_default()).join("migrations.rs");
    if let Err(e) = fs::write(&dest, out) {
        println!("cargo:warning=cannot write {}: {e}", dest.display());
    }
}
