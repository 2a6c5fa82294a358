// tests/float_only/feature_cases.hpp: the feature and relation methods on 4 x 2 x 3 x 3 maps (N x D
// rows for the relations), through their run steps with basic_*_options<T>; instantiated for float
// by float_path_feature.cpp (-Werror=double-promotion) and for double by main.cpp. Needs Eigen.
#pragma once

#include <distill/feature.hpp>

#include <cstddef>

namespace float_only {

inline constexpr int feature_n = 4, feature_d = 18;
inline constexpr int feature_count = 8;
inline constexpr const char* feature_names[feature_count] = {"hint", "at", "nst", "factor", "sp", "rkd", "pkt", "cc"};

template <class T>
struct feature_results {
    T loss[feature_count] = {};
    T grad[feature_count][feature_n * feature_d] = {};
    bool ok[feature_count] = {};
};

template <class T>
void run_feature_cases(const T* student, const T* teacher, feature_results<T>& r) noexcept {
    alignas(64) static unsigned char scratch[1 << 14];
    int m = 0;
    const auto step = [&](const auto& opts) {
        const distill::feature_args<T> a{.student = distill::make_view(student, feature_n, 2, 3, 3),
                                         .teacher = distill::make_view(teacher, feature_n, 2, 3, 3)};
        const distill::feature_outputs<T> o{.loss = distill::make_view(&r.loss[m], 1),
                                            .grad_student = distill::make_view(r.grad[m], feature_n, 2, 3, 3)};
        const std::size_t bytes = distill::workspace_bytes(opts, a, o);
        r.ok[m] = bytes <= sizeof scratch && distill::run(opts, a, o, distill::workspace{scratch, bytes}).ok();
        ++m;
    };
    step(distill::basic_hint_options<T>{});
    step(distill::basic_at_options<T>{});
    step(distill::basic_nst_options<T>{});
    step(distill::basic_factor_options<T>{});
    step(distill::basic_sp_options<T>{});
    step(distill::basic_rkd_options<T>{});
    step(distill::basic_pkt_options<T>{});
    step(distill::basic_cc_options<T>{});
}

}  // namespace float_only
