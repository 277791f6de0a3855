//! Build script of the `wharf` package: links librdkafka's metadata update through Wharf's guard
//! (src/fetch_leader_guard.c says why: librdkafka 2.12.1 crashes the process on a broker's leader
//! hint for a topic id it does not know), into the binary and into this package's tests and
//! benches, which run it against real brokers.
//!
//! The guard replaces librdkafka's `rd_kafka_metadata_update_op` by the linker's `--wrap`, which
//! only the final link of a binary can ask for. The guard is given to that link as an object
//! after the libraries (a `rustc-link-arg` comes after them), so that it is always linked, and
//! linked exactly where the flag is: a library crate cannot ask for either in its dependents'
//! links, and an object linked without the flag would name a `__real_` symbol nobody defines.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/fetch_leader_guard.c");
    // rdkafka-sys builds librdkafka in its OUT_DIR and names that directory (`links = "rdkafka"`,
    // `cargo:root`); librdkafka's public header is in `src/` there.
    let root = std::env::var("DEP_RDKAFKA_ROOT").expect("rdkafka-sys names where it built librdkafka");
    let objects = cc::Build::new()
        .file("src/fetch_leader_guard.c")
        .include(std::path::Path::new(&root).join("src"))
        // -Wall, not cc's default -Wextra too, which librdkafka's own header does not pass.
        .warnings(false)
        .flag("-Wall")
        .warnings_into_errors(true)
        .compile_intermediates();
    println!("cargo:rustc-link-arg=-Wl,--wrap=rd_kafka_metadata_update_op");
    for object in objects {
        println!("cargo:rustc-link-arg={}", object.display());
    }
}
