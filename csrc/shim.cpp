// What every shim in csrc/ shares: an error crosses into Rust as a
// malloc'd, NUL-terminated message, which Rust frees with this function
// (src/ffi.rs).
#include <cstdlib>

extern "C" void meltr_shim_free(char *message) { free(message); }
