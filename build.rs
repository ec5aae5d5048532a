//! Link flags for libtorch that cargo only applies when this crate prints them:
//! keep libtorch_cuda linked even though no symbol references it directly
//! (otherwise CUDA is never available), and an rpath to libtorch's lib folder
//! so the binary runs with no LD_LIBRARY_PATH.
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath={lib}");
        println!("cargo:rustc-env=MELTR_LIBTORCH_LIB={lib}");
        // The pip package keeps `__version__ = '2.11.0+cu130'` in version.py.
        let version_py = std::path::Path::new(&lib).join("../version.py");
        println!("cargo:rerun-if-changed={}", version_py.display());
        if let Ok(text) = std::fs::read_to_string(&version_py) {
            let version = text
                .lines()
                .find_map(|l| l.strip_prefix("__version__ = "))
                .map(|v| v.trim_matches(|c| c == '\'' || c == '"'));
            if let Some(version) = version {
                println!("cargo:rustc-env=MELTR_LIBTORCH_VERSION={version}");
            }
        }
    }
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
}
