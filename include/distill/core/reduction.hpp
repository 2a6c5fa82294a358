// distill/core/reduction.hpp: how per-row losses become the returned loss.
#pragma once

#include <cstdint>
#include <initializer_list>

#include "status.hpp"

namespace distill {

/// With row weights w_i (1 by default, 0 for ignored rows) and per-row losses L_i:
///   batchmean: sum_i w_i L_i / sum_i w_i   (0, with zero gradients, when sum_i w_i = 0)
///   sum:       sum_i w_i L_i
///   none:      the vector (w_i L_i), one value per row
enum class reduction : std::uint8_t { batchmean, sum, none };

constexpr bool is_valid(reduction r) noexcept {
    return r == reduction::batchmean || r == reduction::sum || r == reduction::none;
}

constexpr const char* to_string(reduction r) noexcept {
    switch (r) {
        case reduction::batchmean: return "batchmean";
        case reduction::sum: return "sum";
        case reduction::none: return "none";
    }
    return "?";
}

/// Parses "batchmean", "sum" or "none"; any other word is an error of kind value.
constexpr status parse_reduction(const char* word, reduction& out) noexcept {
    auto equal = [](const char* a, const char* b) {
        while (*a && *a == *b) ++a, ++b;
        return *a == *b;
    };
    for (reduction r : {reduction::batchmean, reduction::sum, reduction::none}) {
        if (word && equal(word, to_string(r))) {
            out = r;
            return {};
        }
    }
    return status::error(errc::unknown_reduction, "reduction")
        .text("reduction: unknown word '").text(word ? word : "").text("' (expected batchmean, sum or none)");
}

}  // namespace distill
