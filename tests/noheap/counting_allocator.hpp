// tests/noheap/counting_allocator.hpp: replaces every global allocation function with one that
// counts while counting is on (include it in exactly one translation unit).
//
// Replaced: all eight replaceable forms of operator new (plain, array, nothrow, aligned), every
// operator delete, and, with glibc, the C allocator (malloc, calloc, realloc, free, memalign,
// posix_memalign, aligned_alloc, valloc, pvalloc), forwarded to glibc's own __libc_* entry points so
// that memory from any of them may be freed by any other. Eigen allocates through std::malloc, so
// an Eigen heap buffer is counted even when its own EIGEN_RUNTIME_NO_MALLOC check is compiled out.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <new>

namespace noheap {

struct counters {
    long operator_new = 0;  ///< calls of any operator new
    long c_alloc = 0;       ///< calls of malloc, calloc, realloc, memalign, posix_memalign, ...
    long total() const noexcept { return operator_new + c_alloc; }
};

inline bool counting = false;
inline counters counted{};

/// Starts counting from zero.
inline void start() noexcept {
    counted = {};
    counting = true;
}
/// Stops counting and returns what was counted since start().
inline counters stop() noexcept {
    counting = false;
    return counted;
}

}  // namespace noheap

#if defined(__GLIBC__)
#define DISTILL_NOHEAP_C_ALLOCATOR 1
extern "C" {
void* __libc_malloc(std::size_t) noexcept;
void* __libc_calloc(std::size_t, std::size_t) noexcept;
void* __libc_realloc(void*, std::size_t) noexcept;
void* __libc_memalign(std::size_t, std::size_t) noexcept;
void __libc_free(void*) noexcept;
}
namespace noheap::raw {
inline void* allocate(std::size_t n) noexcept { return __libc_malloc(n == 0 ? 1 : n); }
inline void* allocate_aligned(std::size_t n, std::size_t a) noexcept { return __libc_memalign(a, n == 0 ? 1 : n); }
inline void release(void* p) noexcept { __libc_free(p); }
}  // namespace noheap::raw

namespace noheap::detail {
inline void count_c() noexcept {
    if (counting) ++counted.c_alloc;
}
}  // namespace noheap::detail

extern "C" {
void* malloc(std::size_t n) noexcept {
    noheap::detail::count_c();
    return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t size) noexcept {
    noheap::detail::count_c();
    return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t n) noexcept {
    noheap::detail::count_c();
    return __libc_realloc(p, n);
}
void free(void* p) noexcept { __libc_free(p); }
void* memalign(std::size_t alignment, std::size_t n) noexcept {
    noheap::detail::count_c();
    return __libc_memalign(alignment, n);
}
void* aligned_alloc(std::size_t alignment, std::size_t n) noexcept {
    noheap::detail::count_c();
    return __libc_memalign(alignment, n);
}
int posix_memalign(void** out, std::size_t alignment, std::size_t n) noexcept {
    noheap::detail::count_c();
    if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
    void* p = __libc_memalign(alignment, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void* valloc(std::size_t n) noexcept {
    noheap::detail::count_c();
    return __libc_memalign(4096, n);
}
void* pvalloc(std::size_t n) noexcept {
    noheap::detail::count_c();
    return __libc_memalign(4096, (n + 4095) / 4096 * 4096);
}
}
#else
#define DISTILL_NOHEAP_C_ALLOCATOR 0
namespace noheap::raw {
inline void* allocate(std::size_t n) noexcept { return std::malloc(n == 0 ? 1 : n); }
inline void* allocate_aligned(std::size_t n, std::size_t a) noexcept {
    return std::aligned_alloc(a, (n + a - 1) / a * a);
}
inline void release(void* p) noexcept { std::free(p); }
}  // namespace noheap::raw
#endif

namespace noheap::detail {
inline void* counted_new(std::size_t n) noexcept {
    if (counting) ++counted.operator_new;
    return raw::allocate(n);
}
inline void* counted_new(std::size_t n, std::align_val_t a) noexcept {
    if (counting) ++counted.operator_new;
    const auto alignment = static_cast<std::size_t>(a);
    return raw::allocate_aligned(n, alignment < sizeof(void*) ? sizeof(void*) : alignment);
}
inline void* or_abort(void* p) noexcept {
    if (!p) std::abort();  // built without exceptions: no std::bad_alloc to throw
    return p;
}
}  // namespace noheap::detail

void* operator new(std::size_t n) { return noheap::detail::or_abort(noheap::detail::counted_new(n)); }
void* operator new[](std::size_t n) { return noheap::detail::or_abort(noheap::detail::counted_new(n)); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return noheap::detail::counted_new(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return noheap::detail::counted_new(n); }
void* operator new(std::size_t n, std::align_val_t a) { return noheap::detail::or_abort(noheap::detail::counted_new(n, a)); }
void* operator new[](std::size_t n, std::align_val_t a) { return noheap::detail::or_abort(noheap::detail::counted_new(n, a)); }
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return noheap::detail::counted_new(n, a); }
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept { return noheap::detail::counted_new(n, a); }

void operator delete(void* p) noexcept { noheap::raw::release(p); }
void operator delete[](void* p) noexcept { noheap::raw::release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { noheap::raw::release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { noheap::raw::release(p); }
void operator delete(void* p, std::size_t) noexcept { noheap::raw::release(p); }
void operator delete[](void* p, std::size_t) noexcept { noheap::raw::release(p); }
void operator delete(void* p, std::align_val_t) noexcept { noheap::raw::release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { noheap::raw::release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { noheap::raw::release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { noheap::raw::release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { noheap::raw::release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { noheap::raw::release(p); }
