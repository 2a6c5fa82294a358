// distill/core/status.hpp: how every check step reports bad input.
//
// A status is a small value type: an error code, the name of the offending
// argument and a message that states the sizes involved, e.g.
//   "kd: teacher has shape [3, 6] but student has shape [3, 5]".
// It never allocates (the message lives in a fixed buffer), so it is usable
// with -fno-exceptions and on microcontrollers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "config.hpp"

namespace distill {

/// What went wrong. `kind()` groups the codes into the two conformance kinds.
enum class errc : std::uint8_t {
    ok = 0,
    // kind shape: dimensions that do not fit together
    bad_rank,            ///< a tensor has the wrong number of dimensions
    shape_mismatch,      ///< two tensors that must agree do not
    empty_input,         ///< N = 0 or C = 0
    missing_argument,    ///< a required input or output is absent
    size_overflow,       ///< extents whose product (or whose strided span) overflows 63 bits
    // kind value: a parameter or an integer input out of its range
    invalid_parameter,   ///< temperature <= 0, a weight outside its range, ...
    unknown_reduction,   ///< a reduction word or enumerator that does not exist
    label_out_of_range,  ///< a label outside [0, C) that is not ignore_index
    invalid_weight,      ///< a negative or non-finite row weight
    index_out_of_range,  ///< an id input (kd_topk's teacher.index) outside [0, V)
    repeated_index,      ///< an id that appears twice where ids must be distinct (a row of teacher.index)
    non_finite_input,    ///< nan or inf in a real input (only from the opt-in check_finite, core/finite.hpp)
    // usage errors
    aliasing,            ///< an output overlaps an input or another output
    workspace_too_small, ///< the caller's scratch is smaller than the query said
    unsupported_layout,  ///< strides distill cannot walk (a sample whose dimensions are not contiguous with each other)
};

enum class error_kind : std::uint8_t { none, shape, value, usage };

constexpr error_kind kind_of(errc e) noexcept {
    switch (e) {
        case errc::ok: return error_kind::none;
        case errc::bad_rank:
        case errc::shape_mismatch:
        case errc::empty_input:
        case errc::missing_argument:
        case errc::size_overflow: return error_kind::shape;
        case errc::invalid_parameter:
        case errc::unknown_reduction:
        case errc::label_out_of_range:
        case errc::invalid_weight:
        case errc::index_out_of_range:
        case errc::repeated_index:
        case errc::non_finite_input: return error_kind::value;
        case errc::aliasing:
        case errc::workspace_too_small:
        case errc::unsupported_layout: return error_kind::usage;
    }
    return error_kind::usage;
}

constexpr const char* to_string(error_kind k) noexcept {
    switch (k) {
        case error_kind::none: return "none";
        case error_kind::shape: return "shape";
        case error_kind::value: return "value";
        case error_kind::usage: return "usage";
    }
    return "usage";
}

class status {
public:
    static constexpr std::size_t message_capacity = 192;

    constexpr status() noexcept = default;

    constexpr errc code() const noexcept { return code_; }
    constexpr error_kind kind() const noexcept { return kind_of(code_); }
    constexpr bool ok() const noexcept { return code_ == errc::ok; }
    constexpr explicit operator bool() const noexcept { return ok(); }
    /// Name of the offending argument ("" when ok).
    constexpr const char* argument() const noexcept { return argument_; }
    /// Null-terminated human-readable message ("ok" when ok).
    constexpr const char* message() const noexcept { return code_ == errc::ok ? "ok" : message_; }

    /// Builder used by the check steps: status::error(errc::..., "teacher").text("...").number(3)...
    static constexpr status error(errc code, const char* argument) noexcept {
        status s;
        s.code_ = code;
        s.argument_ = argument;
        return s;
    }
    constexpr status& text(const char* t) noexcept {
        while (t && *t) put(*t++);
        return *this;
    }
    constexpr status& number(std::int64_t v) noexcept {
        char digits[24];
        int n = 0;
        const bool neg = v < 0;
        std::uint64_t u = neg ? 0 - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
        do {
            digits[n++] = static_cast<char>('0' + u % 10);
            u /= 10;
        } while (u != 0);
        if (neg) put('-');
        while (n > 0) put(digits[--n]);
        return *this;
    }
    /// Writes a real value with up to 6 significant digits (no <cstdio> needed). A float is
    /// formatted with float arithmetic, anything else in double, so that a float-only build (a
    /// Cortex-M4's single-precision FPU) reports errors without double-precision code.
    template <class R>
    constexpr status& real(R value) noexcept {
        using F = std::conditional_t<std::is_same_v<R, float>, float, double>;
        F v = static_cast<F>(value);
        if (v != v) return text("nan");
        if (v < F(0)) {
            put('-');
            v = -v;
        }
        if (v > std::numeric_limits<F>::max()) return text("inf");
        int exp10 = 0;
        if (v != F(0)) {
            while (v >= F(10)) { v /= F(10); ++exp10; }
            while (v < F(1)) { v *= F(10); --exp10; }
        }
        // Round (not truncate) to 6 significant digits; 9.999995 rounds up to the next decade.
        // Through int32 (the value is below 1000001): a float -> int64 conversion is a libgcc
        // call that computes in double on FPUs without double precision (Cortex-M4).
        std::int64_t digits = static_cast<std::int32_t>(v * F(1e5) + F(0.5));
        if (digits >= 1000000) {
            digits /= 10;
            ++exp10;
        }
        char text_digits[6] = {};
        for (int i = 5; i >= 0; --i, digits /= 10) text_digits[i] = static_cast<char>('0' + digits % 10);
        put(text_digits[0]);
        put('.');
        for (int i = 1; i < 6; ++i) put(text_digits[i]);
        if (exp10 != 0) {
            put('e');
            number(exp10);
        }
        return *this;
    }
    /// "[3, 5]" for the given extents.
    constexpr status& shape(const std::int64_t* extents, int rank) noexcept {
        put('[');
        for (int r = 0; r < rank; ++r) {
            if (r) text(", ");
            number(extents[r]);
        }
        put(']');
        return *this;
    }

private:
    constexpr void put(char c) noexcept {
        if (length_ + 1 < message_capacity) {
            message_[length_++] = c;
            message_[length_] = '\0';
        }
    }

    errc code_ = errc::ok;
    const char* argument_ = "";
    std::size_t length_ = 0;
    char message_[message_capacity] = {};
};

}  // namespace distill
