// distill/losses/feature/factor.hpp: the factor-transfer loss (FT, student stage).
//
// J. Kim, S. Park, N. Kwak, "Paraphrasing Complex Network: Network Compression via Factor
// Transfer", NeurIPS 2018 (reference code: RepDistiller FT.py with p1 = 2, p2 = 1; the flat map
// as in the paper, torchdistill and Knowledge-Distillation-Zoo ft.py). The inputs are the
// factors (the translator's and the paraphraser's outputs, N x C x H x W); the two networks are
// the user's. When H x W differ, the map at least as large in both is adaptive-average-pooled to
// the other's size first (taller but narrower: shape error).
//
//   map = attention: a_n = normalize(vec((1/C) sum_c |f_c|^p1)), K = H' W' (channel counts may differ)
//   map = flat:      a_n = normalize(f_n) over all K = C H' W' values (equal channel counts)
//   L = (1/(N K)) sum_{n,k} |a^s_{n,k} - a^t_{n,k}|^p2
//   dL/da^s = (p2/(N K)) |d|^(p2-1) sign(d) (0 at d = 0), then the VJPs of the normalisation,
//   of the map (attention: (p1/C)|f|^(p1-1) sign(f)) and of the pooling when the student was pooled.
//
// Cost: O(N C H W) time for each side; workspace 2 N K + 2 N values (+ N C H' W' for a pooled
// side with the attention map). Inputs of any strides. Knowledge outputs: a^s and a^t (N x K).
#pragma once

#include <cstddef>
#include <cstdint>

#include "at.hpp"

namespace distill {

/// The map factor compares.
enum class factor_map : std::uint8_t {
    attention,  ///< the at map of |f|^p1 averaged over channels (RepDistiller)
    flat,       ///< the whole normalised factor (the paper)
};

constexpr const char* to_string(factor_map m) noexcept {
    switch (m) {
        case factor_map::attention: return "attention";
        case factor_map::flat: return "flat";
    }
    return "?";
}

/// Parses "attention" or "flat"; any other word is an error of kind value (argument "map").
constexpr status parse_factor_map(const char* word, factor_map& out) noexcept {
    auto equal = [](const char* a, const char* b) {
        while (*a && *a == *b) ++a, ++b;
        return *a == *b;
    };
    for (factor_map m : {factor_map::attention, factor_map::flat}) {
        if (word && equal(word, to_string(m))) {
            out = m;
            return {};
        }
    }
    return status::error(errc::invalid_parameter, "map")
        .text("factor: unknown map '").text(word ? word : "").text("' (expected attention or flat)");
}

/// factor's parameters (RepDistiller's defaults).
template <class Real>
struct basic_factor_options {
    factor_map map = factor_map::attention;
    Real p1 = 2;  ///< exponent of the attention map (>= 1; unused by map = flat, but validated)
    Real p2 = 1;  ///< exponent of the distance (>= 1)
};
using factor_options = basic_factor_options<double>;
using factor_float_options = basic_factor_options<float>;

template <class Real>
struct feature_method<basic_factor_options<Real>> {
    using options = basic_factor_options<Real>;
    static constexpr const char* name = "factor";
    static constexpr feature_form form = feature_form::pair;

    static constexpr detail::normalized_map_kind kind(const options& opts) noexcept {
        return opts.map == factor_map::flat ? detail::normalized_map_kind::flat : detail::normalized_map_kind::attention;
    }

    template <class Backend, class T, class Space>
    static status check_inputs(const Backend&, const options& opts, const feature_args<T, Space>& a) noexcept {
        if (opts.map != factor_map::attention && opts.map != factor_map::flat)
            return detail::method_error(errc::invalid_parameter, name, "map").text("map = ")
                .number(static_cast<std::int64_t>(opts.map)).text(" is neither attention nor flat");
        if (status s = detail::check_parameter(name, "p1", opts.p1, Real(1)); !s) return s;
        if (status s = detail::check_parameter(name, "p2", opts.p2, Real(1)); !s) return s;
        if (status s = detail::check_map_pair(name, a); !s) return s;
        if (opts.map == factor_map::flat && a.student.extent(1) != a.teacher.extent(1))
            return detail::method_error(errc::shape_mismatch, name, "teacher").text("teacher has shape ")
                .shape(a.teacher.extents(), 4).text(" but student has shape ").shape(a.student.extents(), 4)
                .text(": map = flat needs equal channel counts");
        return {};
    }
    template <class T, class Space>
    static knowledge_shape knowledge(const options& opts, const feature_args<T, Space>& a, int) noexcept {
        return {2, {a.student.extent(0), detail::normalized_map_loss::length(kind(opts), a.student, a.teacher)}};
    }
    template <class T, class Space>
    static std::size_t workspace_bytes(const options& opts, const feature_args<T, Space>& a) noexcept {
        return detail::normalized_map_loss::workspace_values(kind(opts), a.student, a.teacher) * sizeof(T);
    }
    template <class Backend, class T, class Space>
    static void run(const Backend& backend, const options& opts, const feature_args<T, Space>& a,
                    const feature_outputs<T, Space>& o, workspace ws) {
        detail::normalized_map_loss::run(backend, kind(opts), static_cast<T>(opts.p1), static_cast<T>(opts.p2), a, o, ws);
    }
};

/// factor(student, teacher[, opts]): factor-transfer loss and d loss / d student.
inline constexpr feature_loss_fn<basic_factor_options> factor{};

}  // namespace distill
