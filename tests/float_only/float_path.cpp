// tests/float_only/float_path.cpp: the float-only path. Compiled with -Wdouble-promotion
// -Werror=double-promotion: a float run step that promoted to double anywhere in distill's headers
// would not build. It must not reach <iostream> either.
#include "float_path.hpp"

#include "cases.hpp"

#include <cstring>

#if defined(_GLIBCXX_IOSTREAM) || defined(_LIBCPP_IOSTREAM)
#error "<iostream> is reachable from the float-only path"
#endif

namespace float_only {

void run_float(const float* student, const float* teacher, const std::int32_t* labels, results<float>& r) noexcept {
    run_cases<float>(student, teacher, labels, r);
}

bool float_error_message(char* out, std::size_t capacity) noexcept {
    // A bad parameter in float: the status formats it with float arithmetic.
    const float s[2] = {0.0f, 1.0f}, t[2] = {1.0f, 0.0f};
    float loss = 0.0f;
    const auto args = distill::make_response_args(distill::make_view(s, 1, 2), distill::make_view(t, 1, 2));
    const distill::status st = distill::run(distill::kd_float_options{.temperature = -1.5f}, args,
                                            distill::response_outputs<float>{distill::make_view(&loss, 1)});
    std::strncpy(out, st.message(), capacity - 1);
    out[capacity - 1] = '\0';
    return !st.ok() && st.kind() == distill::error_kind::value && loss == 0.0f;
}

}  // namespace float_only
