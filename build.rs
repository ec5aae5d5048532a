//! Link flags for libtorch that cargo only applies when this crate prints them:
//! keep libtorch_cuda linked even though no symbol references it directly
//! (otherwise CUDA is never available), and an rpath to libtorch's lib folder
//! so the binary runs with no LD_LIBRARY_PATH. Also compiles the small C++
//! shims (`csrc/`: forward-mode AD, device memory statistics, fused Adam,
//! TorchScript module buffers, foreach clipping, c10d process groups and
//! gradient buckets) against the same libtorch.
fn main() {
    compile_shims();
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

/// `csrc/*.cpp`, built with libtorch's headers and C++ ABI; the NCCL
/// process group only where libtorch has CUDA (then `cfg(meltr_nccl)`).
fn compile_shims() {
    const SOURCES: [&str; 9] = [
        "csrc/shim.cpp",
        "csrc/module_buffers.cpp",
        "csrc/math_kernels.cpp",
        "csrc/forward_ad.cpp",
        "csrc/device_memory.cpp",
        "csrc/fused_adam.cpp",
        "csrc/clip.cpp",
        "csrc/process_group.cpp",
        "csrc/grad_buckets.cpp",
    ];
    const NCCL_SOURCE: &str = "csrc/process_group_nccl.cpp";
    for source in SOURCES
        .iter()
        .chain([&NCCL_SOURCE, &"csrc/process_group.h"])
    {
        println!("cargo:rerun-if-changed={source}");
    }
    println!("cargo::rustc-check-cfg=cfg(meltr_nccl)");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        panic!("torch-sys did not report libtorch's lib folder (DEP_TCH_LIBTORCH_LIB); run scripts/setup.sh");
    };
    let root = std::path::Path::new(&lib).join("..");
    let with_cuda = std::path::Path::new(&lib).join("libtorch_cuda.so").exists();
    // The same libstdc++ ABI choice as torch-sys makes (new ABI unless told).
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .files(SOURCES)
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-w");
    if with_cuda {
        build.file(NCCL_SOURCE);
        println!("cargo:rustc-cfg=meltr_nccl");
    }
    build.compile("meltr_shims");
    if with_cuda {
        // ProcessGroupNCCL lives in libtorch_cuda, which nothing else names.
        println!("cargo:rustc-link-arg=-ltorch_cuda");
    }
}
