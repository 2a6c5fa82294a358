// runner.cpp - the conformance runner: runs `.case` files against distill.
//
//   distill_conformance [--backend eigen|thrust] [--precision double|float] [--verbose] PATH...
//
// PATH is a `.case` file or a directory searched recursively. Every case whose
// method has a runner (the table `methods` below) is run on the chosen backend
// and precision and judged (see judge()); a case of another method is skipped.
// One line per failing case, then "N passed, M failed, K skipped". The exit
// status is 0 only when nothing failed and every file parsed.
//
// Adding a method: write methods/<id>.hpp (a struct with `id` and a `run`
// template, see methods/kd.hpp), include it here and add one entry to `methods`.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "case_file.hpp"
#include "harness.hpp"
#include "methods/kd.hpp"
#include "methods/kd_topk.hpp"
#include "methods/reverse_kd.hpp"
#include "methods/logit_mse.hpp"
#include "methods/ce.hpp"
#include "methods/dkd.hpp"
#include "methods/dist.hpp"
#include "methods/jsd.hpp"
#include "methods/skew_kd.hpp"
#include "methods/skew_reverse_kd.hpp"
#include "methods/tvd.hpp"
#include "methods/soft_ce.hpp"
// feature and relation methods
#include "methods/at.hpp"
#include "methods/factor.hpp"
#include "methods/fsp.hpp"
#include "methods/nst.hpp"
#include "methods/sp.hpp"
#include "methods/rkd.hpp"
#include "methods/pkt.hpp"
#include "methods/cc.hpp"
#include "methods/cc_repdistiller.hpp"
#include "methods/hint.hpp"
#include "methods/ab.hpp"
#include "methods/vid.hpp"

namespace distill_conformance {
namespace {

enum class backend_id { eigen, thrust };
enum class precision_id { float64, float32 };

/// The tolerance a case is judged with. In float the case's float64 tolerance is loosened to
/// at least rtol 1e-3, atol 1e-4: the inputs are rounded to float and the maths runs in float.
struct tolerance {
    double rtol, atol;
};
tolerance tolerance_for(const case_data& c, precision_id p) {
    if (p == precision_id::float64) return {c.rtol, c.atol};
    return {std::max(c.rtol, 1e-3), std::max(c.atol, 1e-4)};
}

std::string format(const char* fmt, double a) {
    char buf[64];
    std::snprintf(buf, sizeof buf, fmt, a);
    return buf;
}

std::string flat_index_string(std::size_t flat, const shape_t& shape) {
    if (shape.empty()) return "";
    shape_t index(shape.size());
    for (std::size_t r = shape.size(); r-- > 0;) {
        const auto d = static_cast<std::size_t>(shape[r]);
        index[r] = d ? static_cast<std::int64_t>(flat % d) : 0;
        flat = d ? flat / d : 0;
    }
    return " at " + shape_string(index);
}

/// "" when `got` matches `want`; otherwise what is wrong with this output.
std::string compare(const tensor_data& want, const output_values& got, tolerance tol) {
    if (got.shape != want.shape)
        return want.name + ": shape " + shape_string(got.shape) + ", expected " + shape_string(want.shape);
    if (got.untouched != 0)
        return want.name + ": " + std::to_string(got.untouched) + " of " + std::to_string(got.values.size()) +
               " elements not written";
    double max_abs = 0, max_rel = 0, worst_excess = -INFINITY;
    std::size_t mismatches = 0, worst = 0;
    for (std::size_t i = 0; i < want.real.size(); ++i) {
        const double g = got.values[i], w = want.real[i];
        if (values_match(g, w, tol.rtol, tol.atol)) continue;
        const double abs_err = std::isfinite(g) && std::isfinite(w) ? std::fabs(g - w) : INFINITY;
        const double rel_err = w != 0 ? abs_err / std::fabs(w) : INFINITY;
        const double excess = abs_err - (tol.atol + tol.rtol * std::fabs(w));  // by how much it misses
        if (mismatches == 0 || excess > worst_excess) worst = i, worst_excess = excess;
        max_abs = std::max(max_abs, abs_err);
        max_rel = std::max(max_rel, rel_err);
        ++mismatches;
    }
    if (mismatches == 0) return "";
    return want.name + ": " + std::to_string(mismatches) + " of " + std::to_string(want.real.size()) +
           " values differ, max abs err " + format("%.3g", max_abs) + ", max rel err " + format("%.3g", max_rel) +
           " (rtol " + format("%g", tol.rtol) + ", atol " + format("%g", tol.atol) + "); worst" +
           flat_index_string(worst, want.shape) + ": got " + format("%.17g", got.values[worst]) + ", want " +
           format("%.17g", want.real[worst]);
}

/// The verdict on one call: "" when it conforms, else the problems, joined.
std::string judge(const case_data& c, const distill::status& s, const std::vector<output_values>& outputs,
                  tolerance tol) {
    std::vector<std::string> problems;
    if (!c.error.empty()) {
        const std::string_view kind = distill::to_string(s.kind());
        if (s.ok())
            problems.push_back("expected error " + c.error + ", but the call succeeded");
        else if (kind != c.error)
            problems.push_back("expected error " + c.error + ", got " + std::string(kind) + " error: " + s.message());
        for (const auto& o : outputs)
            if (o.untouched != o.values.size())
                problems.push_back("error call wrote output " + o.name + " (" +
                                   std::to_string(o.values.size() - o.untouched) + " of " +
                                   std::to_string(o.values.size()) + " elements)");
    } else if (!s.ok()) {
        problems.push_back("unexpected " + std::string(distill::to_string(s.kind())) + " error: " + s.message());
    } else {
        for (const auto& want : c.expects) {
            const auto got = std::find_if(outputs.begin(), outputs.end(),
                                          [&](const output_values& o) { return o.name == want.name; });
            if (got == outputs.end())
                problems.push_back(want.name + ": the runner does not produce this output");
            else if (std::string p = compare(want, *got, tol); !p.empty())
                problems.push_back(std::move(p));
        }
    }
    std::string joined;
    for (const auto& p : problems) joined += (joined.empty() ? "" : "; ") + p;
    return joined;
}

template <class Method, class Memory>
std::string run_case(const case_data& c, tolerance tol) {
    call<Memory> context(c);
    const distill::status s = Method::run(context);
    context.check_all_used();
    return judge(c, s, context.read_outputs(), tol);
}

using case_runner = std::string (*)(const case_data&, tolerance);

/// One method: its id and its runner for each backend x precision (null: backend not built).
struct method_entry {
    std::string_view id;
    case_runner runners[2][2];  // [backend_id][precision_id]
};

template <class Method>
method_entry entry() {
    method_entry e{Method::id,
                   {{&run_case<Method, eigen_memory<double>>, &run_case<Method, eigen_memory<float>>}, {nullptr, nullptr}}};
#if DISTILL_CONFORMANCE_HAS_THRUST
    e.runners[1][0] = &run_case<Method, thrust_memory<double>>;
    e.runners[1][1] = &run_case<Method, thrust_memory<float>>;
#endif
    return e;
}

/// Every method the runner implements: one entry each.
const method_entry methods[] = {
    entry<kd_method>(),
    entry<kd_topk_method>(),
    entry<reverse_kd_method>(),
    entry<logit_mse_method>(),
    entry<ce_method>(),
    entry<dkd_method>(),
    entry<dist_method>(),
    entry<jsd_method>(),
    entry<skew_kd_method>(),
    entry<skew_reverse_kd_method>(),
    entry<tvd_method>(),
    entry<soft_ce_method>(),
    // feature and relation methods
    entry<sp_method>(),
    entry<at_method>(),
    entry<nst_method>(),
    entry<factor_method>(),
    entry<fsp_method>(),
    entry<rkd_method>(),
    entry<pkt_method>(),
    entry<cc_method>(),
    entry<cc_repdistiller_method>(),
    entry<hint_method>(),
    entry<ab_method>(),
    entry<vid_method>(),
};

const method_entry* find_method(std::string_view id) {
    for (const auto& m : methods)
        if (m.id == id) return &m;
    return nullptr;
}

int usage(const char* why) {
    if (why) std::fprintf(stderr, "distill_conformance: %s\n", why);
    std::fprintf(stderr,
                 "usage: distill_conformance [--backend eigen|thrust] [--precision double|float] [--verbose] PATH...\n"
                 "  PATH: a .case file or a directory searched recursively for .case files\n");
    return 2;
}

int run_main(int argc, char** argv) {
    backend_id backend = backend_id::eigen;
    precision_id precision = precision_id::float64;
    bool verbose = false;
    std::vector<std::string> paths;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        auto value = [&](std::string_view flag) -> std::string_view {
            if (arg.size() > flag.size() && arg.substr(0, flag.size()) == flag && arg[flag.size()] == '=')
                return arg.substr(flag.size() + 1);
            if (arg == flag && i + 1 < argc) return argv[++i];
            return {};
        };
        if (arg == "--help" || arg == "-h") return usage(nullptr), 0;
        if (arg == "--verbose" || arg == "-v") {
            verbose = true;
        } else if (arg.starts_with("--backend")) {
            const std::string_view v = value("--backend");
            if (v == "eigen") backend = backend_id::eigen;
            else if (v == "thrust") backend = backend_id::thrust;
            else return usage("--backend takes eigen or thrust");
        } else if (arg.starts_with("--precision")) {
            const std::string_view v = value("--precision");
            if (v == "double") precision = precision_id::float64;
            else if (v == "float") precision = precision_id::float32;
            else return usage("--precision takes double or float");
        } else if (arg.starts_with("-") && arg != "-") {
            return usage(("unknown option " + std::string(arg)).c_str());
        } else {
            paths.emplace_back(arg);
        }
    }
    if (paths.empty()) return usage("no PATH given");
    if (backend == backend_id::thrust && !DISTILL_CONFORMANCE_HAS_THRUST)
        return usage("this runner was built without Thrust; --backend thrust is unavailable");

    std::string error;
    const auto files = collect_case_files(paths, error);
    if (!error.empty()) return usage(error.c_str());
    if (files.empty()) return usage("no .case files found");

    int passed = 0, failed = 0, skipped = 0;
    for (const auto& file : files) {
        case_data c;
        if (!load_case(file, c, error)) {
            std::printf("FAIL %s\n", error.c_str());
            ++failed;
            continue;
        }
        const method_entry* method = find_method(c.method);
        if (!method) {
            if (verbose) std::printf("skip %s (no runner for method %s)\n", c.path.c_str(), c.method.c_str());
            ++skipped;
            continue;
        }
        std::string verdict;
        try {
            verdict = method->runners[static_cast<int>(backend)][static_cast<int>(precision)](c, tolerance_for(c, precision));
        } catch (const runner_error& e) {
            verdict = std::string("runner error: ") + e.what();
        } catch (const std::exception& e) {
            verdict = std::string("exception: ") + e.what();
        }
        if (verdict.empty()) {
            if (verbose) std::printf("ok   %s\n", c.path.c_str());
            ++passed;
        } else {
            std::printf("FAIL %s: %s\n", c.path.c_str(), verdict.c_str());
            ++failed;
        }
    }
    std::printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace distill_conformance

int main(int argc, char** argv) { return distill_conformance::run_main(argc, argv); }
