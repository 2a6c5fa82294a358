// tests/unit/core_test.cpp: the dependency-free core (distill/core/*).
//
// Views, status messages, reduction parsing, the tensor concepts with a minimal user
// type (static archetype tests), the std::span / raw-pointer / distill::tensor adapters,
// as_matrix, and the CPU backend's traits. Includes nothing but <distill/distill.hpp>,
// so it also proves the core builds without Eigen, xtensor or Thrust.
#include "test_support.hpp"
#include "process/schedules.hpp"

#include <array>
#include <functional>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

using distill::errc;
using distill::error_kind;
using distill::index_t;

// ------------------------------------------------------------------------ a user tensor type

namespace user {
/// A row-major float matrix, the way an application might already have one.
struct grid {
    std::vector<float> values;
    int rows = 0, cols = 0;
};
/// Integer class ids, adapted with the one-template form of the customisation point.
struct class_ids {
    std::vector<std::int32_t> ids;
};
/// A matrix that lives in "device" memory: only its view type says so.
struct device_grid {
    double* data = nullptr;
    int rows = 0, cols = 0;
};
/// A type whose adapter returns something that is not a view.
struct not_a_view {};
}  // namespace user

template <>
struct distill::tensor_adapter<user::grid> {
    static distill::strided_view<float, 2> view(user::grid& g) noexcept { return make(g.values.data(), g); }
    static distill::strided_view<const float, 2> view(const user::grid& g) noexcept { return make(g.values.data(), g); }

private:
    template <class E>
    static distill::strided_view<E, 2> make(E* p, const user::grid& g) noexcept {
        const index_t ext[2] = {g.rows, g.cols}, str[2] = {g.cols, 1};
        return distill::strided_view<E, 2>(p, 2, ext, str);
    }
};

template <>
struct distill::tensor_adapter<user::class_ids> {
    static auto view(auto& x) noexcept { return distill::make_view(x.ids.data(), x.ids.size()); }
};

template <>
struct distill::tensor_adapter<user::device_grid> {
    static distill::strided_view<double, 2, distill::device_space> view(const user::device_grid& g) noexcept {
        const index_t ext[2] = {g.rows, g.cols}, str[2] = {g.cols, 1};
        return {g.data, 2, ext, str};
    }
};

template <>
struct distill::tensor_adapter<user::not_a_view> {
    static float* view(const user::not_a_view&) noexcept { return nullptr; }
};

namespace {
struct no_adapter {
    float* data() { return nullptr; }
};
}  // namespace

// The archetype satisfies every concept it should, and nothing else.
static_assert(distill::tensor_like<user::grid>);
static_assert(distill::tensor_like<const user::grid>);
static_assert(distill::tensor_like<user::grid&>);
static_assert(distill::real_tensor<user::grid>);
static_assert(distill::host_tensor<user::grid>);
static_assert(distill::writable_tensor<user::grid>);
static_assert(!distill::writable_tensor<const user::grid>);
static_assert(!distill::device_tensor<user::grid>);
static_assert(!distill::integer_tensor<user::grid>);
static_assert(distill::optional_tensor<user::grid>);
static_assert(std::is_same_v<distill::view_type_t<user::grid>, distill::strided_view<float, 2>>);
static_assert(std::is_same_v<distill::view_type_t<const user::grid>, distill::strided_view<const float, 2>>);
static_assert(std::is_same_v<distill::value_type_t<const user::grid>, float>);
static_assert(std::is_same_v<distill::element_type_t<const user::grid>, const float>);

static_assert(distill::integer_tensor<user::class_ids>);
static_assert(!distill::real_tensor<user::class_ids>);
static_assert(std::is_same_v<distill::view_type_t<const user::class_ids>, distill::strided_view<const std::int32_t, 1>>);

static_assert(distill::device_tensor<user::device_grid>);
static_assert(distill::real_tensor<user::device_grid>);
static_assert(!distill::host_tensor<user::device_grid>);
static_assert(std::is_same_v<distill::memory_space_t<user::device_grid>, distill::device_space>);

// Types that must not be tensors.
static_assert(!distill::tensor_like<int>);
static_assert(!distill::tensor_like<float*>);
static_assert(!distill::tensor_like<const double*>);
static_assert(!distill::tensor_like<std::vector<float>>);
static_assert(!distill::tensor_like<std::array<float, 4>>);
static_assert(!distill::tensor_like<no_adapter>);
static_assert(!distill::tensor_like<user::not_a_view>);
static_assert(!distill::tensor_like<distill::none_t>);
static_assert(!distill::real_tensor<std::span<int>>);
static_assert(!distill::integer_tensor<std::span<float>>);
static_assert(!distill::optional_tensor<int>);
static_assert(!distill::optional_tensor<std::vector<float>>);
static_assert(distill::optional_tensor<distill::none_t>);
static_assert(distill::optional_tensor<const distill::none_t&>);

// Views, spans and the owning tensor are tensors.
static_assert(distill::real_tensor<distill::matrix_view<float>>);
static_assert(distill::real_tensor<distill::any_view<const double>>);
static_assert(!distill::writable_tensor<distill::any_view<const double>>);
static_assert(distill::device_tensor<distill::matrix_view<float, distill::device_space>>);
static_assert(distill::real_tensor<std::span<const float>>);
static_assert(distill::real_tensor<std::span<double, 3>>);
static_assert(distill::integer_tensor<std::span<const std::int64_t>>);
static_assert(distill::real_tensor<distill::tensor<float>>);
static_assert(distill::writable_tensor<distill::tensor<float>>);
static_assert(!distill::writable_tensor<const distill::tensor<float>>);

// Views are cheap value types a kernel can capture by value.
static_assert(std::is_trivially_copyable_v<distill::matrix_view<float>>);
static_assert(std::is_trivially_copyable_v<distill::any_view<const double, distill::device_space>>);
// Const-correct conversions only: mutable -> const and static -> dynamic rank, never back.
static_assert(std::is_convertible_v<distill::matrix_view<float>, distill::matrix_view<const float>>);
static_assert(std::is_convertible_v<distill::matrix_view<float>, distill::any_view<const float>>);
static_assert(!std::is_convertible_v<distill::matrix_view<const float>, distill::matrix_view<float>>);
static_assert(!std::is_convertible_v<distill::any_view<float>, distill::matrix_view<float>>);
static_assert(!std::is_convertible_v<distill::matrix_view<float>, distill::vector_view<float>>);
static_assert(!std::is_convertible_v<distill::matrix_view<float>, distill::any_view<double>>);
static_assert(!std::is_convertible_v<distill::matrix_view<float, distill::device_space>, distill::any_view<float>>);

// The CPU backend is the default on host memory, and runs host memory only.
static_assert(std::is_same_v<distill::default_backend_t<distill::host_space>, distill::cpu_backend>);
static_assert(distill::backend_for<distill::cpu_backend, distill::host_space>);
static_assert(!distill::backend_for<distill::cpu_backend, distill::device_space>);
static_assert(distill::backend_object<distill::cpu_backend>);
static_assert(!distill::backend_object<distill::matrix_view<float>>);
static_assert(!distill::backend_object<distill::tensor<float>>);

// --------------------------------------------------------------------------------------- views

TEST_CASE("view: make_view gives row-major extents and strides") {
    std::vector<float> a(24);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i);
    const auto m = distill::make_view(a.data(), 2, 3);
    static_assert(std::is_same_v<decltype(m), const distill::strided_view<float, 2>>);
    CHECK(m.rank() == 2);
    CHECK(m.bound());
    CHECK(m.extent(0) == 2);
    CHECK(m.extent(1) == 3);
    CHECK(m.stride(0) == 3);
    CHECK(m.stride(1) == 1);
    CHECK(m.size() == 6);
    CHECK_FALSE(m.empty());
    CHECK(m(1, 2) == 5.0f);
    CHECK(&m(1, 0) == a.data() + 3);
    CHECK(m.is_row_major_contiguous());

    const auto t = distill::make_view(a.data(), 2, 3, 4);
    CHECK(t.stride(0) == 12);
    CHECK(t.stride(1) == 4);
    CHECK(t.stride(2) == 1);
    CHECK(t(1, 2, 3) == 23.0f);

    const auto v = distill::make_view(a.data() + 1, 5u);
    CHECK(v.rank() == 1);
    CHECK(v.extent(0) == 5);
    CHECK(v(4) == 5.0f);
}

TEST_CASE("view: make_view is usable in constant expressions") {
    static_assert([] {
        double buffer[6] = {0, 1, 2, 3, 4, 5};
        const auto m = distill::make_view(buffer, 3, 2);
        return m.stride(0) == 2 && m.size() == 6 && m(2, 1) == 5.0;
    }());
    CHECK(distill::make_view(static_cast<int*>(nullptr), 7).size() == 7);
}

TEST_CASE("view: default views are unbound (dynamic) or null (static)") {
    const distill::any_view<float> unbound;
    CHECK_FALSE(unbound.bound());
    CHECK(unbound.rank() == -1);
    CHECK(unbound.size() == 0);
    CHECK(unbound.data() == nullptr);

    const distill::any_view<const float> still_unbound = unbound;
    CHECK_FALSE(still_unbound.bound());

    const distill::matrix_view<float> null_matrix;
    CHECK(null_matrix.bound());
    CHECK(null_matrix.rank() == 2);
    CHECK(null_matrix.size() == 0);
    CHECK(null_matrix.data() == nullptr);
}

TEST_CASE("view: conversion to const and to dynamic rank keeps data, extents and strides") {
    std::vector<double> a(12);
    const index_t ext[2] = {3, 2}, str[2] = {1, 3};  // column-major 3 x 2
    const distill::matrix_view<double> m(a.data(), 2, ext, str);
    const distill::any_view<const double> d = m;
    CHECK(d.bound());
    CHECK(d.rank() == 2);
    CHECK(d.data() == a.data());
    CHECK(d.extent(0) == 3);
    CHECK(d.extent(1) == 2);
    CHECK(d.stride(0) == 1);
    CHECK(d.stride(1) == 3);
    CHECK(&d(2, 1) == a.data() + 5);
    CHECK_FALSE(d.is_row_major_contiguous());
}

TEST_CASE("view: rank 0 holds one element; unit extents do not break contiguity") {
    double x = 4;
    const distill::any_view<double> scalar(&x, 0, nullptr, nullptr);
    CHECK(scalar.bound());
    CHECK(scalar.size() == 1);
    CHECK(scalar() == 4.0);

    std::vector<float> a(3);
    const index_t ext[3] = {1, 3, 1}, str[3] = {99, 1, -5};  // strides of unit extents are irrelevant
    CHECK(distill::any_view<float>(a.data(), 3, ext, str).is_row_major_contiguous());
    const index_t gap[3] = {1, 3, 1}, gap_str[3] = {99, 2, 1};
    CHECK_FALSE(distill::any_view<float>(a.data(), 3, gap, gap_str).is_row_major_contiguous());
}

TEST_CASE("view: checked_size detects overflow and negative extents") {
    index_t n = -1;
    CHECK(distill::make_view(static_cast<float*>(nullptr), 1000, 1000).checked_size(n));
    CHECK(n == 1000000);

    const index_t zero_str[3] = {0, 0, 0};
    const index_t largest[2] = {index_t(1) << 32, index_t(1) << 30};  // 2^62 fits
    CHECK(distill::any_view<float>(nullptr, 2, largest, zero_str).checked_size(n));
    CHECK(n == index_t(1) << 62);
    const index_t too_big[2] = {index_t(1) << 32, index_t(1) << 31};  // 2^63 does not
    CHECK_FALSE(distill::any_view<float>(nullptr, 2, too_big, zero_str).checked_size(n));
    const index_t zero_first[3] = {0, index_t(1) << 62, 4};  // a zero extent makes any product fit
    CHECK(distill::any_view<float>(nullptr, 3, zero_first, zero_str).checked_size(n));
    CHECK(n == 0);
    const index_t negative[2] = {-2, 3};
    CHECK_FALSE(distill::any_view<float>(nullptr, 2, negative, zero_str).checked_size(n));
    CHECK(distill::any_view<float>().checked_size(n));
    CHECK(n == 0);
}

TEST_CASE("view: checked_size rejects a strided span that overflows 63 bits") {
    index_t n = -1;
    const index_t ext[2] = {2, 2};
    const index_t fits[2] = {index_t(1) << 61, 1};  // span 2^61 + 1
    CHECK(distill::any_view<float>(nullptr, 2, ext, fits).checked_size(n));
    CHECK(n == 4);
    const index_t huge[2] = {std::numeric_limits<index_t>::max(), 1};  // span INT64_MAX + 1
    CHECK_FALSE(distill::any_view<float>(nullptr, 2, ext, huge).checked_size(n));
    const index_t two_halves[2] = {index_t(1) << 62, index_t(1) << 62};  // each fits, the sum does not
    CHECK_FALSE(distill::any_view<float>(nullptr, 2, ext, two_halves).checked_size(n));
    const index_t most_negative[2] = {std::numeric_limits<index_t>::min(), 1};  // |stride| not representable
    CHECK_FALSE(distill::any_view<float>(nullptr, 2, ext, most_negative).checked_size(n));
    const index_t negative[2] = {-(index_t(1) << 61), -1};  // negative strides count by magnitude
    CHECK(distill::any_view<float>(nullptr, 2, ext, negative).checked_size(n));
    // An extent of 1 never steps, and an empty view spans nothing, whatever the stride.
    const index_t one_row[2] = {1, 2}, empty[2] = {0, 2};
    CHECK(distill::any_view<float>(nullptr, 2, one_row, huge).checked_size(n));
    CHECK(distill::any_view<float>(nullptr, 2, empty, two_halves).checked_size(n));
    CHECK(n == 0);
}

TEST_CASE("check_finite: a value error naming the tensor, counting nan and inf") {
    std::vector<double> v = {0.0, 1.0, -2.5, 4.9e-324, 1e308};  // a denormal and a large value are finite
    CHECK(distill::check_finite("student", distill::make_view(v.data(), 5)).ok());
    v[1] = std::numeric_limits<double>::quiet_NaN();
    v[4] = -std::numeric_limits<double>::infinity();
    const distill::status s = distill::check_finite("student", distill::make_view(v.data(), 5));
    CHECK(s.code() == errc::non_finite_input);
    CHECK(s.kind() == error_kind::value);
    CHECK(std::string(s.message()).find("student has 2 non-finite values") != std::string::npos);

    // Strided: a column of a row-major 2 x 3 matrix sees only its own elements.
    std::vector<float> m = {1, std::numeric_limits<float>::infinity(), 3, 4, 5, 6};
    const index_t ext[1] = {2}, col0[1] = {3};
    CHECK(distill::check_finite("col", distill::any_view<const float>(m.data(), 1, ext, col0)).ok());
    CHECK_FALSE(distill::check_finite("row", distill::make_view(m.data(), 2, 3)).ok());
    CHECK(distill::check_finite("rank0", distill::any_view<const float>(m.data(), 0, nullptr, nullptr)).ok());

    // Unbound and empty views pass; an overflowing one is a shape error, read nowhere.
    CHECK(distill::check_finite("none", distill::any_view<const float>()).ok());
    CHECK(distill::check_finite("empty", distill::make_view(static_cast<float*>(nullptr), 0, 3)).ok());
    const index_t big[2] = {index_t(1) << 40, index_t(1) << 40}, zero[2] = {0, 0};
    CHECK(distill::check_finite("big", distill::any_view<const float>(m.data(), 2, big, zero)).kind() == error_kind::shape);
}

// -------------------------------------------------------------------------------------- status

TEST_CASE("status: a default status is ok") {
    constexpr distill::status ok;
    static_assert(ok.ok());
    CHECK(ok.ok());
    CHECK(static_cast<bool>(ok));
    CHECK(ok.code() == errc::ok);
    CHECK(ok.kind() == error_kind::none);
    CHECK(std::string(ok.message()) == "ok");
    CHECK(std::string(ok.argument()).empty());
}

TEST_CASE("status: the builder writes text, integers, reals and shapes") {
    const index_t shape[3] = {3, 5, 1};
    const distill::status s = distill::status::error(errc::shape_mismatch, "teacher")
                                  .text("n=")
                                  .number(-42)
                                  .text(" z=")
                                  .number(0)
                                  .text(" min=")
                                  .number(std::numeric_limits<std::int64_t>::min())
                                  .text(" ")
                                  .shape(shape, 3)
                                  .text(" ")
                                  .shape(shape, 0);
    CHECK_FALSE(s.ok());
    CHECK_FALSE(static_cast<bool>(s));
    CHECK(s.code() == errc::shape_mismatch);
    CHECK(s.kind() == error_kind::shape);
    CHECK(std::string(s.argument()) == "teacher");
    CHECK(std::string(s.message()) == "n=-42 z=0 min=-9223372036854775808 [3, 5, 1] []");
}

TEST_CASE("status: reals are written with six significant digits") {
    auto real = [](double v) { return std::string(distill::status::error(errc::invalid_parameter, "x").real(v).message()); };
    CHECK(real(0.0) == "0.00000");
    CHECK(real(1.5) == "1.50000");
    CHECK(real(-1.0) == "-1.00000");
    CHECK(real(-0.5) == "-5.00000e-1");
    CHECK(real(12345.0) == "1.23450e4");
    CHECK(real(0.25) == "2.50000e-1");
    CHECK(real(1e-5) == "1.00000e-5");
    CHECK(real(std::numeric_limits<double>::quiet_NaN()) == "nan");
    CHECK(real(std::numeric_limits<double>::infinity()) == "inf");
    CHECK(real(-std::numeric_limits<double>::infinity()) == "-inf");
}

TEST_CASE("status: a message longer than the buffer is cut, never overflows") {
    const std::string long_text(500, 'x');
    const distill::status s = distill::status::error(errc::aliasing, "a").text(long_text.c_str()).text("tail");
    const std::string message = s.message();
    CHECK(message.size() == distill::status::message_capacity - 1);
    CHECK(message == long_text.substr(0, distill::status::message_capacity - 1));
}

TEST_CASE("status: every code has the kind the conformance format expects") {
    struct expectation {
        errc code;
        error_kind kind;
    };
    constexpr expectation table[] = {
        {errc::ok, error_kind::none},
        {errc::bad_rank, error_kind::shape},
        {errc::shape_mismatch, error_kind::shape},
        {errc::empty_input, error_kind::shape},
        {errc::missing_argument, error_kind::shape},
        {errc::size_overflow, error_kind::shape},
        {errc::invalid_parameter, error_kind::value},
        {errc::unknown_reduction, error_kind::value},
        {errc::label_out_of_range, error_kind::value},
        {errc::invalid_weight, error_kind::value},
        {errc::aliasing, error_kind::usage},
        {errc::workspace_too_small, error_kind::usage},
    };
    for (const auto& e : table) {
        CAPTURE(static_cast<int>(e.code));
        CHECK(distill::kind_of(e.code) == e.kind);
        CHECK(distill::status::error(e.code, "x").kind() == e.kind);
    }
    CHECK(std::string(distill::to_string(error_kind::none)) == "none");
    CHECK(std::string(distill::to_string(error_kind::shape)) == "shape");
    CHECK(std::string(distill::to_string(error_kind::value)) == "value");
    CHECK(std::string(distill::to_string(error_kind::usage)) == "usage");
}

TEST_CASE("error: distill::error carries the status and its message") {
    const distill::status s = distill::status::error(errc::label_out_of_range, "labels").text("kd: labels[1] = 9");
    const distill::error e(s);
    CHECK(std::string(e.what()) == "kd: labels[1] = 9");
    CHECK(e.status().code() == errc::label_out_of_range);
    CHECK(std::string(e.status().argument()) == "labels");
    const std::invalid_argument& base = e;
    CHECK(std::string(base.what()) == "kd: labels[1] = 9");
}

// ---------------------------------------------------------------------------------- reductions

TEST_CASE("reduction: the three words parse, and print back") {
    for (distill::reduction r : {distill::reduction::batchmean, distill::reduction::sum, distill::reduction::none}) {
        distill::reduction parsed = r == distill::reduction::sum ? distill::reduction::none : distill::reduction::sum;
        const distill::status s = distill::parse_reduction(distill::to_string(r), parsed);
        CHECK(s.ok());
        CHECK(parsed == r);
        CHECK(distill::is_valid(r));
    }
    CHECK(std::string(distill::to_string(distill::reduction::batchmean)) == "batchmean");
    CHECK(std::string(distill::to_string(distill::reduction::sum)) == "sum");
    CHECK(std::string(distill::to_string(distill::reduction::none)) == "none");
    static_assert([] {
        distill::reduction r{};
        return distill::parse_reduction("none", r).ok() && r == distill::reduction::none;
    }());
}

TEST_CASE("reduction: any other word is a value error that names it, and leaves the output alone") {
    for (const char* word : {"mean", "batch", "batchmeans", "Sum", "", " sum", "none "}) {
        CAPTURE(std::string(word));
        distill::reduction out = distill::reduction::sum;
        const distill::status s = distill::parse_reduction(word, out);
        CHECK(s.code() == errc::unknown_reduction);
        CHECK(s.kind() == error_kind::value);
        CHECK(std::string(s.argument()) == "reduction");
        CHECK(distill_test::contains(s.message(), (std::string("'") + word + "'").c_str()));
        CHECK(out == distill::reduction::sum);
    }
    distill::reduction out = distill::reduction::none;
    CHECK(distill::parse_reduction(nullptr, out).code() == errc::unknown_reduction);
    CHECK(out == distill::reduction::none);
    CHECK_FALSE(distill::is_valid(static_cast<distill::reduction>(3)));
    CHECK_FALSE(distill::is_valid(static_cast<distill::reduction>(7)));
}

// ------------------------------------------------------------------------------------ adapters

TEST_CASE("adapter: std::span is a rank-1 host view") {
    std::vector<float> a = {1, 2, 3, 4};
    const auto v = distill::as_view(std::span<float>(a));
    static_assert(std::is_same_v<decltype(v), const distill::strided_view<float, 1>>);
    CHECK(v.rank() == 1);
    CHECK(v.extent(0) == 4);
    CHECK(v.stride(0) == 1);
    CHECK(v.data() == a.data());
    v(2) = 7;
    CHECK(a[2] == 7.0f);

    const std::array<std::int64_t, 3> fixed = {4, 5, 6};
    const auto f = distill::as_view(std::span<const std::int64_t, 3>(fixed));
    static_assert(std::is_same_v<decltype(f), const distill::strided_view<const std::int64_t, 1>>);
    CHECK(f.extent(0) == 3);
    CHECK(f(1) == 5);
}

TEST_CASE("adapter: distill::tensor is a zero-initialised dense row-major tensor") {
    distill::tensor<double> t({2, 3});
    CHECK(t.rank() == 2);
    CHECK(t.extent(0) == 2);
    CHECK(t.extent(1) == 3);
    CHECK(t.size() == 6);
    for (index_t i = 0; i < 6; ++i) CHECK(t.data()[i] == 0.0);
    t(1, 2) = 5;
    CHECK(t.data()[5] == 5.0);

    const auto v = distill::as_view(t);
    CHECK(v.rank() == 2);
    CHECK(v.stride(0) == 3);
    CHECK(v.stride(1) == 1);
    CHECK(v.data() == t.data());
    const distill::tensor<double>& ct = t;
    static_assert(std::is_same_v<decltype(distill::as_view(ct)), distill::any_view<const double>>);
    CHECK(distill::as_view(ct)(1, 2) == 5.0);

    const index_t extents[3] = {2, 1, 4};
    t.reshape(extents, 3);
    CHECK(t.rank() == 3);
    CHECK(t.size() == 8);
    CHECK(distill::as_view(t).stride(0) == 4);

    const distill::tensor<float> scalar(extents, 0);
    CHECK(scalar.rank() == 0);
    CHECK(scalar.size() == 1);
    const distill::tensor<float> empty;
    CHECK(empty.size() == 0);
    CHECK(distill::as_view(empty).bound());
}

TEST_CASE("as_matrix: a contiguous buffer seen as rows x cols") {
    std::vector<float> a(12);
    for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>(i);
    const auto m = distill::as_matrix(std::span<float>(a), 3, 4);
    static_assert(std::is_same_v<decltype(m), const distill::any_view<float>>);
    CHECK(m.rank() == 2);
    CHECK(m.extent(0) == 3);
    CHECK(m.extent(1) == 4);
    CHECK(m.stride(0) == 4);
    CHECK(m.stride(1) == 1);
    CHECK(m(2, 1) == 9.0f);

    // A row-major matrix can be reshaped too; a column-major one cannot.
    const auto reshaped = distill::as_matrix(distill::make_view(a.data(), 2, 6), 4, 3);
    CHECK(reshaped.bound());
    CHECK(reshaped(3, 2) == 11.0f);
    const index_t ext[2] = {3, 4}, col_major[2] = {1, 3};
    CHECK_FALSE(distill::as_matrix(distill::matrix_view<float>(a.data(), 2, ext, col_major), 3, 4).bound());
}

TEST_CASE("as_matrix: a size mismatch, negative extents or gaps give an unbound view") {
    std::vector<float> a(12);
    CHECK_FALSE(distill::as_matrix(std::span<float>(a), 5, 3).bound());
    CHECK_FALSE(distill::as_matrix(std::span<float>(a), -3, -4).bound());
    CHECK_FALSE(distill::as_matrix(std::span<float>(a), 12, -1).bound());
    const index_t ext = 6, every_other = 2;
    CHECK_FALSE(distill::as_matrix(distill::vector_view<float>(a.data(), 1, &ext, &every_other), 2, 3).bound());
    CHECK(distill::as_matrix(std::span<float>(a.data(), 0), 0, 7).bound());
}

TEST_CASE("as_matrix: extents whose product overflows give an unbound view") {
    // rows * cols = 2^64 must not wrap around to the size (0) of an empty buffer.
    std::vector<float> empty;
    const auto m = distill::as_matrix(std::span<float>(empty), index_t(1) << 32, index_t(1) << 32);
    CHECK_FALSE(m.bound());
}

TEST_CASE("as_matrix: kd reports the unbound view of a bad reshape as a missing student") {
    std::vector<double> s(12, 0.0), t(12, 0.0);
    double loss = 0;
    const distill::response_args<double> args{distill::as_matrix(std::span<const double>(s), 5, 3),
                                              distill::as_matrix(std::span<const double>(t), 4, 3)};
    const distill::status st = distill::run(distill::kd_options{}, args, {distill::make_view(&loss, 1)});
    CHECK(st.code() == errc::missing_argument);
    CHECK(std::string(st.argument()) == "student");
}

// ------------------------------------------------------------------------------ the archetype

TEST_CASE("archetype: a user type with a tensor_adapter works with kd like a raw pointer does") {
    const user::grid student{distill_test::random_values<float>(12, 3), 3, 4};
    const user::grid teacher{distill_test::random_values<float>(12, 4), 3, 4};
    const user::class_ids labels{{1, -100, 3}};
    const distill::kd_options opts{2.0, distill::reduction::none};

    const auto from_user = distill::kd(student, teacher, labels, opts);
    const auto from_pointers = distill::kd(distill::make_view(student.values.data(), 3, 4),
                                           distill::make_view(teacher.values.data(), 3, 4),
                                           distill::make_view(labels.ids.data(), 3), opts);
    CHECK(from_user.loss == from_pointers.loss);
    CHECK(from_user.loss > 0.0f);
    CHECK(from_user.row_losses(1) == 0.0f);
    for (index_t i = 0; i < 3; ++i)
        for (index_t k = 0; k < 4; ++k) CHECK(from_user.grad_student(i, k) == from_pointers.grad_student(i, k));

    // And as a writable output.
    user::grid grad{std::vector<float>(12, -1.0f), 3, 4};
    std::vector<float> loss(3, -1.0f);
    const auto args = distill::make_response_args(student, teacher, labels);
    REQUIRE(distill::run(opts, args, {distill::make_view(loss.data(), 3), distill::as_view(grad)}).ok());
    for (index_t i = 0; i < 3; ++i) CHECK(loss[static_cast<std::size_t>(i)] == from_user.row_losses(i));
    CHECK(grad.values[5] == from_user.grad_student(1, 1));
}

// --------------------------------------------------------------------------------- CPU backend

TEST_CASE("cpu_backend: transform_reduce and run_rows") {
    const distill::cpu_backend cpu;
    CHECK(cpu.transform_reduce(5, [](index_t i) { return i * i; }, index_t(1), std::plus<index_t>{}) == 31);
    CHECK(distill::cpu_backend::rows_workspace_bytes<double>(1000, distill::reduction::batchmean, true) == 0);

    auto kernel = [](index_t i) { return distill::row_result<double>{double(i + 1), 10.0 * double(i)}; };
    double per_row[4] = {-1, -1, -1, -1}, total = -1, dtemperature = -1;
    cpu.run_rows(4, kernel, distill::reduction::none, distill::detail::vector_ref<double>{per_row, 4, 1}, &dtemperature, {});
    CHECK(per_row[0] == 1.0);
    CHECK(per_row[3] == 4.0);
    CHECK(dtemperature == 60.0);
    cpu.run_rows(4, kernel, distill::reduction::sum, distill::detail::vector_ref<double>{&total, 1, 1}, static_cast<double*>(nullptr), {});
    CHECK(total == 10.0);
    CHECK(distill::cpu_backend::load(&total) == 10.0);
}
