// fuzz_distill.cpp - the libFuzzer target (clang: -fsanitize=fuzzer,address,undefined).
//
// Two input formats, chosen by the first byte:
//
// * text (anything but 0xFF first): a conformance `.case` (FORMAT.md), so the seed corpus is
//   tests/conformance/cases and libFuzzer mutates methods, parameters, shapes (0 included) and
//   values (nan, inf, denormals: the case format writes them). The case runs through the
//   conformance runner's method runners (every method it has) on the CPU backend in double
//   and float and on the Thrust backend (CPP device system) in double. Cases with more than
//   4096 input values, or a dimension over 4096 (an empty [6e10, 0] would make the harness
//   allocate a loss or workspace per row), are skipped: huge shapes are the extents mode's.
//   Properties:
//     - no crash, no sanitizer report, no exception from the library;
//     - an error status has a kind (shape / value / usage) and no output element is written
//       (outputs are prefilled with a NaN sentinel, as in the conformance runner);
//     - a successful call writes every output element;
//     - a successful call on "moderate" finite inputs gives finite outputs (moderate: every real
//       input finite with |x| <= 1e4 in the precision under test, every real parameter 0 or
//       with 1e-3 <= |p| <= 1e3; see docs/reliability.md for why the bound exists).
//
// * extents (0xFF first): the bytes choose a row-wise response method, options and the extents
//   and strides of student and teacher views over a small real buffer: 0, 1, 2^31, 2^32 + 1,
//   2^62, INT64_MAX, negative numbers or raw 64-bit values. The views are never backed by
//   enough memory for a huge shape, so the library must decide from extents and strides alone:
//     - a view whose element count or address span does not fit in 63 bits must be rejected
//       (shape error) before anything is read or written;
//     - a view whose footprint lies inside the buffer is run (small) or only checked (large:
//       a stride-0 view of 2^33 elements is valid but too slow to run);
//     - a gradient output placed over the input buffer so that it overlaps student or teacher
//       must be rejected (usage error: aliasing is not supported);
//     - on error nothing is written (neither the outputs nor the input buffer change).
//   Both the CPU backend and the Thrust backend (thrust_host over the CPP system) are called.
//
// A finding aborts with a message on stderr; libFuzzer saves the input.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "../conformance/case_file.hpp"
#include "../conformance/harness.hpp"
#include "../conformance/methods/ab.hpp"
#include "../conformance/methods/at.hpp"
#include "../conformance/methods/cc.hpp"
#include "../conformance/methods/cc_repdistiller.hpp"
#include "../conformance/methods/ce.hpp"
#include "../conformance/methods/dist.hpp"
#include "../conformance/methods/dkd.hpp"
#include "../conformance/methods/factor.hpp"
#include "../conformance/methods/fsp.hpp"
#include "../conformance/methods/hint.hpp"
#include "../conformance/methods/jsd.hpp"
#include "../conformance/methods/kd.hpp"
#include "../conformance/methods/kd_topk.hpp"
#include "../conformance/methods/logit_mse.hpp"
#include "../conformance/methods/nst.hpp"
#include "../conformance/methods/pkt.hpp"
#include "../conformance/methods/reverse_kd.hpp"
#include "../conformance/methods/rkd.hpp"
#include "../conformance/methods/skew_kd.hpp"
#include "../conformance/methods/skew_reverse_kd.hpp"
#include "../conformance/methods/soft_ce.hpp"
#include "../conformance/methods/sp.hpp"
#include "../conformance/methods/tvd.hpp"
#include "../conformance/methods/vid.hpp"

namespace dc = distill_conformance;

namespace {

[[noreturn]] void finding(const std::string& what) {
    std::fprintf(stderr, "distill fuzz finding: %s\n", what.c_str());
    std::fflush(stderr);
    std::abort();
}

// ---------------------------------------------------------------- text mode

/// Are the inputs and parameters in the range where a finite result is promised?
template <class T>
bool moderate(const dc::case_data& c) {
    for (const auto& t : c.inputs) {
        if (t.is_integer) continue;
        // Log-probabilities (kd_topk's teacher.logprob) are exponentiated as they are: only
        // valid ones (<= 0) are in range. Logits are shifted by their row maximum first.
        const bool log_probability = t.name.ends_with("logprob");
        // vid's alpha is a log-scale: sigma^2 = softplus(alpha) + eps, so alpha = -611 with
        // eps = 0 gives sigma^4 = 0 in double and an infinite (correctly overflowing) gradient.
        const bool log_scale = c.method == "vid" && t.name == "alpha";
        for (double v : t.real) {
            const double x = static_cast<double>(static_cast<T>(v));
            if (!std::isfinite(x) || std::fabs(x) > 1e4) return false;
            if (log_probability && x > 0) return false;
            if (log_scale && std::fabs(x) > 30) return false;
        }
    }
    for (const auto& p : c.params) {
        const std::string& v = p.second;
        char* end = nullptr;
        const double x = std::strtod(v.c_str(), &end);
        if (v.empty() || end != v.c_str() + v.size()) continue;  // a word (reduction, mode, ...)
        if (!std::isfinite(x)) return false;
        if (x != 0 && (std::fabs(x) < 1e-3 || std::fabs(x) > 1e3)) return false;
    }
    return true;
}

template <class Method, class Memory>
void run_text_case(const dc::case_data& c, const char* backend) {
    using T = typename Memory::real_type;
    dc::call<Memory> context(c);
    distill::status s;
    try {
        s = Method::run(context);
    } catch (const dc::runner_error&) {
        return;  // the harness cannot express this case (a parameter that is not a number, ...)
    }
    const std::vector<dc::output_values> outputs = context.read_outputs();
    const std::string where = c.method + " on " + backend + (sizeof(T) == 8 ? " double" : " float");
    if (!s.ok()) {
        if (s.kind() == distill::error_kind::none) finding(where + ": failed status without a kind");
        for (const auto& o : outputs)
            if (o.untouched != o.values.size())
                finding(where + ": error (" + s.message() + ") but output " + o.name + " was written");
        return;
    }
    for (const auto& o : outputs)
        if (o.untouched != 0) finding(where + ": success but output " + o.name + " not fully written");
    if (!moderate<T>(c)) return;
    for (const auto& o : outputs)
        for (double v : o.values)
            if (!std::isfinite(v)) finding(where + ": moderate finite inputs but output " + o.name + " is not finite");
}

template <class Method>
void run_all_backends(const dc::case_data& c) {
    run_text_case<Method, dc::eigen_memory<double>>(c, "cpu");
    run_text_case<Method, dc::eigen_memory<float>>(c, "cpu");
    run_text_case<Method, dc::thrust_memory<double>>(c, "thrust");
}

template <class... Methods>
bool dispatch(const dc::case_data& c) {
    return ((c.method == Methods::id ? (run_all_backends<Methods>(c), true) : false) || ...);
}

void fuzz_text(const std::uint8_t* data, std::size_t size) {
    std::istringstream in(std::string(reinterpret_cast<const char*>(data), size));
    dc::case_data c;
    std::string error;
    if (!dc::parse_case(in, c, error)) return;
    // Keep each run short: the fuzzer is after edge cases, not throughput of big tensors.
    // Every dimension is bounded too: an empty tensor such as [6e10, 0] holds no value, but the
    // harness would allocate a loss or a workspace of one value per row for it (the extents mode
    // below gives the library its huge empty views instead).
    std::int64_t elements = 0;
    for (const auto& t : c.inputs) {
        elements += static_cast<std::int64_t>(t.is_integer ? t.integer.size() : t.real.size());
        for (std::int64_t d : t.shape)
            if (d > 4096) return;
    }
    if (elements > 4096) return;
    dispatch<dc::kd_method, dc::kd_topk_method, dc::reverse_kd_method, dc::logit_mse_method, dc::ce_method,
             dc::dkd_method, dc::dist_method, dc::jsd_method, dc::skew_kd_method, dc::skew_reverse_kd_method,
             dc::tvd_method, dc::soft_ce_method, dc::sp_method, dc::at_method, dc::nst_method, dc::factor_method,
             dc::fsp_method, dc::rkd_method, dc::pkt_method, dc::cc_method, dc::cc_repdistiller_method,
             dc::hint_method, dc::ab_method, dc::vid_method>(c);
}

// ---------------------------------------------------------------- extents mode

class bytes {
public:
    bytes(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
    std::uint8_t u8() { return i_ < n_ ? d_[i_++] : 0; }
    std::uint64_t u64() {
        std::uint64_t v = 0;
        for (int k = 0; k < 8; ++k) v = v << 8 | u8();
        return v;
    }
    /// An extent or stride: mostly small, sometimes one of the values that overflow things.
    std::int64_t dim() {
        static constexpr std::int64_t special[] = {
            0, 1, 2, 3, 4, 7, -1, std::int64_t{1} << 31, (std::int64_t{1} << 32) + 1, std::int64_t{1} << 33,
            std::int64_t{3037000500},  // just over sqrt(INT64_MAX)
            std::int64_t{1} << 62, std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min()};
        const std::uint8_t b = u8();
        if (b < 128) return b % 9;
        if (b < 250) return special[b % std::size(special)];
        return static_cast<std::int64_t>(u64());
    }

private:
    const std::uint8_t* d_;
    std::size_t n_, i_ = 0;
};

constexpr std::int64_t buffer_elements = 64;

/// The footprint of a 2-D view: element offsets [lo, hi] in 128 bits, and its element count.
struct footprint {
    __int128 lo = 0, hi = 0, count = 1;
    bool negative_extent = false;
};
footprint footprint_of(const std::int64_t* ext, const std::int64_t* str) {
    footprint f;
    for (int r = 0; r < 2; ++r) {
        if (ext[r] < 0) f.negative_extent = true;
        f.count *= static_cast<__int128>(ext[r] < 0 ? 0 : ext[r]);
    }
    if (f.count == 0 || f.negative_extent) return f;
    for (int r = 0; r < 2; ++r) {
        const __int128 span = static_cast<__int128>(ext[r] - 1) * str[r];
        (span < 0 ? f.lo : f.hi) += span;
    }
    return f;
}

/// A gradient output placed over the input buffer: alias_offset >= 0 puts it at that element.
struct extents_call {
    const std::int64_t *se, *ss, *te, *ts;
    std::int64_t alias_offset = -1;
};

template <class Options, class Backend>
void run_extents(const Backend& backend, const Options& opts, const extents_call& x, const char* what) {
    const std::int64_t *se = x.se, *ss = x.ss, *te = x.te, *ts = x.ts;
    // The input buffer has room behind the views for an aliasing gradient output.
    std::vector<double> input(2 * buffer_elements);
    for (std::int64_t i = 0; i < 2 * buffer_elements; ++i) input[i] = 0.25 * static_cast<double>(i % 7) - 0.5;
    const std::vector<double> input_before = input;
    const footprint fs = footprint_of(se, ss), ft = footprint_of(te, ts);
    constexpr __int128 i63 = std::numeric_limits<std::int64_t>::max();
    const auto overflows = [&](const footprint& f) {
        return f.negative_extent || f.count > i63 || f.hi > i63 || -f.lo > i63;
    };
    const auto inside = [&](const footprint& f) {
        return !overflows(f) && (f.count == 0 || (f.lo >= 0 && f.hi < buffer_elements));
    };
    // A view that claims memory the buffer does not have, with a representable footprint, is a
    // caller's bug the library cannot see: do not make that call.
    if ((!overflows(fs) && !inside(fs)) || (!overflows(ft) && !inside(ft))) return;
    const bool must_fail = overflows(fs) || overflows(ft);

    const distill::any_view<const double> student(input.data(), 2, se, ss), teacher(input.data(), 2, te, ts);
    const distill::response_args<double, distill::host_space, std::int64_t> args{student, teacher, {}, {}};
    double loss[1] = {dc::sentinel<double>()};
    std::vector<double> grad(buffer_elements, dc::sentinel<double>());
    distill::response_outputs<double> outs{distill::make_view(loss, 1), {}};
    const bool small = !must_fail && fs.count <= buffer_elements;
    bool aliased = false;
    if (small) {
        const std::int64_t ge[2] = {se[0], se[1]}, gs[2] = {se[1], 1};
        double* g = grad.data();
        if (x.alias_offset >= 0) {
            // Dense gradient at [off, off + count) of the input buffer: overlapping the student's
            // or the teacher's footprint must be rejected (usage error), without writing.
            const __int128 off = x.alias_offset % buffer_elements, end = off + fs.count;
            g = input.data() + off;
            aliased = fs.count > 0 && ((fs.lo < end && off <= fs.hi) || (ft.count > 0 && ft.lo < end && off <= ft.hi));
        }
        outs.grad_student = distill::any_view<double>(g, 2, ge, gs);
    }
    const std::string where = std::string(distill::response_method<Options>::name) + " (" + what + ") extents [" +
                              std::to_string(se[0]) + ", " + std::to_string(se[1]) + "] strides [" +
                              std::to_string(ss[0]) + ", " + std::to_string(ss[1]) + "], teacher [" +
                              std::to_string(te[0]) + ", " + std::to_string(te[1]) + "] strides [" +
                              std::to_string(ts[0]) + ", " + std::to_string(ts[1]) + "]";
    const distill::status checked = distill::check(backend, opts, args, outs);
    if (must_fail && checked.ok()) finding(where + ": check accepted a view whose size overflows");
    if (aliased && checked.ok()) finding(where + ": check accepted a gradient output that overlaps an input");
    if (!checked.ok() && checked.kind() == distill::error_kind::none) finding(where + ": failed status without a kind");
    distill::status ran = checked;
    if (small || !checked.ok()) {
        // workspace_bytes is defined for arguments that pass the check (the documented order);
        // a failing call gets no workspace and must still report its check error.
        const std::size_t need = checked.ok() ? distill::workspace_bytes(backend, opts, args, outs) : 0;
        std::vector<std::max_align_t> scratch(need / sizeof(std::max_align_t) + 1);
        ran = distill::run(backend, opts, args, outs, {scratch.data(), scratch.size() * sizeof(std::max_align_t)});
        if (ran.ok() != checked.ok()) finding(where + ": check and run disagree");
    }
    if (!ran.ok()) {
        if (!dc::is_sentinel(loss[0])) finding(where + ": error (" + ran.message() + ") but loss written");
        for (double g : grad)
            if (!dc::is_sentinel(g)) finding(where + ": error (" + ran.message() + ") but gradient written");
        if (std::memcmp(input.data(), input_before.data(), input.size() * sizeof(double)) != 0)
            finding(where + ": error (" + ran.message() + ") but the input buffer changed");
    } else if (small && !std::isfinite(loss[0])) {
        finding(where + ": finite inputs but loss " + std::to_string(loss[0]));
    }
}

template <class Options>
void extents_both(Options opts, const extents_call& x) {
    run_extents(distill::cpu_backend{}, opts, x, "cpu");
    run_extents(distill::thrust_host(thrust::cpp::par), opts, x, "thrust cpp");
}

void fuzz_extents(const std::uint8_t* data, std::size_t size) {
    bytes in(data + 1, size - 1);
    const std::uint8_t method = in.u8();
    const std::uint8_t reduce = in.u8() % 2;
    std::int64_t se[2] = {in.dim(), in.dim()}, ss[2], te[2], ts[2];
    // Row-major strides (wrapping in unsigned, as a caller's arithmetic might) or chosen ones.
    if (in.u8() & 1) {
        ss[1] = 1;
        ss[0] = static_cast<std::int64_t>(static_cast<std::uint64_t>(se[1]));
    } else {
        ss[0] = in.dim();
        ss[1] = in.dim();
    }
    if (in.u8() & 1) {
        te[0] = se[0], te[1] = se[1], ts[0] = ss[0], ts[1] = ss[1];
    } else {
        te[0] = in.dim(), te[1] = in.dim(), ts[0] = in.dim(), ts[1] = in.dim();
    }
    const std::uint8_t alias = in.u8();
    const extents_call x{se, ss, te, ts, alias >= 128 ? std::int64_t{alias - 128} : -1};
    const auto red = reduce == 0 ? distill::reduction::batchmean : distill::reduction::sum;
    switch (method % 7) {
        case 0: extents_both(distill::kd_options{.reduce = red}, x); break;
        case 1: extents_both(distill::reverse_kd_options{.reduce = red}, x); break;
        case 2: extents_both(distill::jsd_options{.reduce = red}, x); break;
        case 3: extents_both(distill::tvd_options{.reduce = red}, x); break;
        case 4: extents_both(distill::soft_ce_options{.reduce = red}, x); break;
        case 5: extents_both(distill::logit_mse_options{.reduce = red}, x); break;
        default: extents_both(distill::skew_kd_options{.reduce = red}, x); break;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0 || size > 1 << 16) return 0;
    if (data[0] == 0xFF)
        fuzz_extents(data, size);
    else
        fuzz_text(data, size);
    return 0;
}
