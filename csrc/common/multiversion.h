// A1_MULTIVERSION: compile a hot function twice, AVX2 and baseline x86-64, and let the loader pick
// the clone for the running CPU, so a wheel needs no -march=native. Off under ThreadSanitizer,
// whose runtime is not up yet when the dynamic loader runs the ifunc resolver.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__) && \
    !defined(__SANITIZE_THREAD__)
#define A1_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define A1_MULTIVERSION
#endif
