// tests/unit/adapters_test.cpp: distill/adapters/eigen.hpp and distill/adapters/xtensor.hpp.
//
// Each adapted type gives the view its memory really has (extents, strides, data), and
// kd over it gives exactly what kd gives over the same values behind a raw pointer:
// the layout changes the addresses the kernel reads, never the arithmetic.
#include "test_support.hpp"

#include <distill/eigen.hpp>
#include <distill/xtensor.hpp>

#include <xtensor/xadapt.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xbroadcast.hpp>
#include <xtensor/xfixed.hpp>
#include <xtensor/xmanipulation.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include <array>
#include <cstdint>
#include <vector>

using distill::errc;
using distill::index_t;
using distill::reduction;
using namespace distill_test;

namespace {

template <class T>
using row_major = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using col_major = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;

template <class X>
void check_view(const X& x, int rank, std::initializer_list<index_t> extents, std::initializer_list<index_t> strides,
                const void* data) {
    const auto v = distill::as_view(x);
    REQUIRE(v.rank() == rank);
    int r = 0;
    for (index_t e : extents) CHECK(v.extent(r++) == e);
    r = 0;
    for (index_t s : strides) CHECK(v.stride(r++) == s);
    CHECK(static_cast<const void*>(v.data()) == data);
}

/// Two convenience results are the same (bit for bit without FMA contraction: see same_value).
template <class R>
void check_identical(const R& a, const R& b) {
    REQUIRE(a.status.ok());
    REQUIRE(b.status.ok());
    CHECK(same_value(a.loss, b.loss));
    CHECK(same_value(a.grad_temperature, b.grad_temperature));
    REQUIRE(a.grad_student.size() == b.grad_student.size());
    double magnitude = 0;
    for (index_t k = 0; k < a.grad_student.size(); ++k)
        magnitude = std::max(magnitude, std::abs(static_cast<double>(a.grad_student.data()[k])));
    for (index_t k = 0; k < a.grad_student.size(); ++k)
        CHECK(same_value(a.grad_student.data()[k], b.grad_student.data()[k], magnitude));
    REQUIRE(a.row_losses.size() == b.row_losses.size());
    for (index_t k = 0; k < a.row_losses.size(); ++k) CHECK(same_value(a.row_losses.data()[k], b.row_losses.data()[k]));
}

constexpr reduction all_reductions[] = {reduction::batchmean, reduction::sum, reduction::none};

}  // namespace

// ------------------------------------------------------------------------------------- Eigen

// Lazy expressions have no memory: they are not tensors (evaluate them first).
static_assert(!distill::tensor_like<decltype(std::declval<Eigen::MatrixXd>() + std::declval<Eigen::MatrixXd>())>);
static_assert(!distill::tensor_like<decltype(std::declval<Eigen::MatrixXd>() * std::declval<Eigen::MatrixXd>())>);
static_assert(!distill::tensor_like<decltype(std::declval<Eigen::ArrayXXf>() * 2.0f)>);
static_assert(!distill::tensor_like<decltype(std::declval<Eigen::MatrixXd>().rowwise().reverse())>);
static_assert(distill::tensor_like<decltype((std::declval<Eigen::MatrixXd>() + std::declval<Eigen::MatrixXd>()).eval())>);
// Matrices are rank 2 and vectors rank 1; const objects give read-only views.
static_assert(distill::real_tensor<Eigen::MatrixXf>);
static_assert(distill::real_tensor<Eigen::ArrayXXd>);
static_assert(distill::writable_tensor<Eigen::MatrixXd>);
static_assert(!distill::writable_tensor<const Eigen::MatrixXd>);
static_assert(!distill::writable_tensor<Eigen::Map<const Eigen::MatrixXd>>);
static_assert(distill::integer_tensor<Eigen::VectorXi>);
static_assert(distill::view_type_t<Eigen::MatrixXd>::static_rank == 2);
static_assert(distill::view_type_t<Eigen::VectorXd>::static_rank == 1);
static_assert(distill::view_type_t<Eigen::RowVectorXf>::static_rank == 1);
static_assert(distill::view_type_t<Eigen::Matrix<float, 3, 4, Eigen::RowMajor>>::static_rank == 2);

TEST_CASE("eigen: views follow the storage order, strides and blocks") {
    col_major<double> cm(3, 4);
    row_major<double> rm(3, 4);
    cm.setRandom();
    rm = cm;
    check_view(cm, 2, {3, 4}, {1, 3}, cm.data());
    check_view(rm, 2, {3, 4}, {4, 1}, rm.data());
    CHECK(distill::as_view(cm)(2, 1) == cm(2, 1));
    CHECK(distill::as_view(rm)(2, 1) == rm(2, 1));

    check_view(cm.block(1, 1, 2, 3), 2, {2, 3}, {1, 3}, &cm(1, 1));
    check_view(rm.block(1, 1, 2, 3), 2, {2, 3}, {4, 1}, &rm(1, 1));
    check_view(cm.transpose(), 2, {4, 3}, {3, 1}, cm.data());
    check_view(cm.row(1), 1, {4}, {3}, &cm(1, 0));
    check_view(rm.col(2), 1, {3}, {4}, &rm(0, 2));
    check_view(cm.diagonal(), 1, {3}, {4}, cm.data());

    std::vector<float> buffer(40);
    using outer_map = Eigen::Map<row_major<float>, 0, Eigen::OuterStride<>>;
    check_view(outer_map(buffer.data() + 1, 3, 4, Eigen::OuterStride<>(9)), 2, {3, 4}, {9, 1}, buffer.data() + 1);
    using strided_map = Eigen::Map<col_major<float>, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
    check_view(strided_map(buffer.data(), 3, 4, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(8, 2)), 2, {3, 4}, {2, 8},
               buffer.data());
    using strided_vector = Eigen::Map<const Eigen::VectorXf, 0, Eigen::InnerStride<3>>;
    check_view(strided_vector(buffer.data(), 5), 1, {5}, {3}, buffer.data());

    const Eigen::Ref<const col_major<double>> ref = cm.middleCols(1, 2);
    check_view(ref, 2, {3, 2}, {1, 3}, &cm(0, 1));

    Eigen::ArrayXXf array(2, 5);
    check_view(array, 2, {2, 5}, {1, 2}, array.data());
    Eigen::Matrix<float, 3, 4, Eigen::RowMajor> fixed;
    check_view(fixed, 2, {3, 4}, {4, 1}, fixed.data());
}

TEST_CASE_TEMPLATE("eigen: row-major and column-major students give identical results", T, float, double) {
    host_problem<T> p(9, 13, 201);
    const row_major<T> rs = Eigen::Map<const row_major<T>>(p.student.data(), 9, 13);
    const row_major<T> rt = Eigen::Map<const row_major<T>>(p.teacher.data(), 9, 13);
    const col_major<T> cs = rs, ct = rt;
    Eigen::VectorXi labels(9);
    labels << 0, 1, 2, -100, 4, 5, 6, 7, 12;
    const Eigen::Matrix<T, Eigen::Dynamic, 1> weight = Eigen::Matrix<T, Eigen::Dynamic, 1>::LinSpaced(9, T(0.25), T(3));
    for (bool standardize : {false, true})
        for (reduction red : all_reductions) {
            const distill::kd_options opts{1.5, red, -100, standardize};
            const auto pointer = distill::kd(distill::make_view(p.student.data(), 9, 13), distill::make_view(p.teacher.data(), 9, 13),
                                             distill::make_view(labels.data(), 9), distill::make_view(weight.data(), 9), opts);
            check_identical(distill::kd(rs, rt, labels, weight, opts), pointer);
            check_identical(distill::kd(cs, ct, labels, weight, opts), pointer);
            check_identical(distill::kd(rs, ct, labels, weight, opts), pointer);
        }
}

TEST_CASE_TEMPLATE("eigen: maps with outer and inner strides, Ref, blocks and transposes", T, float, double) {
    host_problem<T> p(5, 7, 211);
    const distill::kd_options opts{2.0, reduction::none, -100, true};
    const auto expected = distill::kd(distill::make_view(p.student.data(), 5, 7), distill::make_view(p.teacher.data(), 5, 7), opts);

    // The student inside a larger buffer: every second element, rows 17 apart.
    std::vector<T> sparse(5 * 17, T(1e6));
    for (index_t i = 0; i < 5; ++i)
        for (index_t k = 0; k < 7; ++k) sparse[static_cast<std::size_t>(i * 17 + 2 * k)] = p.student[static_cast<std::size_t>(i * 7 + k)];
    using strided = Eigen::Map<const row_major<T>, 0, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>>;
    const strided s_map(sparse.data(), 5, 7, Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>(17, 2));
    const Eigen::Map<const row_major<T>> t_map(p.teacher.data(), 5, 7);
    check_identical(distill::kd(s_map, t_map, opts), expected);

    // A block of a larger matrix, seen through a Ref.
    col_major<T> big = col_major<T>::Constant(8, 10, T(-7));
    big.block(2, 3, 5, 7) = t_map;
    const Eigen::Ref<const col_major<T>, 0, Eigen::OuterStride<>> t_ref = big.block(2, 3, 5, 7);
    check_identical(distill::kd(s_map, t_ref, opts), expected);
    check_identical(distill::kd(s_map, big.block(2, 3, 5, 7), opts), expected);

    // The transpose of a C x N column-major matrix is the N x C row-major student.
    const col_major<T> student_t = Eigen::Map<const row_major<T>>(p.student.data(), 5, 7).transpose();
    check_identical(distill::kd(student_t.transpose(), t_map, opts), expected);
}

TEST_CASE_TEMPLATE("eigen: vectors for labels and weights, including strided rows", T, float, double) {
    host_problem<T> p(4, 6, 221);
    p.with_labels({2}).with_weight();
    const distill::kd_options opts{3.0, reduction::sum};
    const auto expected = distill::kd(distill::make_view(p.student.data(), 4, 6), distill::make_view(p.teacher.data(), 4, 6),
                                      distill::make_view(p.labels.data(), 4), distill::make_view(p.weight.data(), 4), opts);
    const Eigen::Map<const row_major<T>> s(p.student.data(), 4, 6), t(p.teacher.data(), 4, 6);
    const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1> labels = Eigen::Map<const Eigen::Matrix<std::int64_t, Eigen::Dynamic, 1>>(p.labels.data(), 4);
    const Eigen::Matrix<T, 1, Eigen::Dynamic> weight_row = Eigen::Map<const Eigen::Matrix<T, 1, Eigen::Dynamic>>(p.weight.data(), 4);
    check_identical(distill::kd(s, t, labels, weight_row, opts), expected);
    // The weights as a row of a column-major matrix (stride 3), the labels as int32.
    col_major<T> table = col_major<T>::Zero(3, 4);
    table.row(1) = weight_row;
    const Eigen::VectorXi labels32 = labels.template cast<int>();
    check_identical(distill::kd(s, t, labels32, table.row(1), opts), expected);
}

TEST_CASE_TEMPLATE("eigen: outputs written into column-major matrices and vectors", T, float, double) {
    host_problem<T> p(5, 4, 231);
    const distill::kd_options opts{1.0, reduction::none, -100, true};
    const auto expected = distill::kd(distill::make_view(p.student.data(), 5, 4), distill::make_view(p.teacher.data(), 5, 4), opts);
    Eigen::Matrix<T, Eigen::Dynamic, 1> loss = Eigen::Matrix<T, Eigen::Dynamic, 1>::Constant(5, T(-1));
    col_major<T> grad = col_major<T>::Constant(5, 4, T(-1));
    Eigen::Matrix<T, 1, 1> grad_t(T(-1));
    const auto args = distill::make_response_args(Eigen::Map<const row_major<T>>(p.student.data(), 5, 4),
                                                  Eigen::Map<const row_major<T>>(p.teacher.data(), 5, 4));
    const distill::status s = distill::run(opts, args, {distill::as_view(loss), distill::as_view(grad), distill::as_view(grad_t)});
    REQUIRE(s.ok());
    for (index_t i = 0; i < 5; ++i) {
        CHECK(same_value(loss(i), expected.row_losses(i)));
        for (index_t k = 0; k < 4; ++k) CHECK(same_value(grad(i, k), expected.grad_student(i, k)));
    }
    CHECK(same_value(grad_t(0), expected.grad_temperature));
}

TEST_CASE("eigen: a row vector student is rank 1, which kd rejects as not 2-D") {
    const Eigen::RowVectorXd s = Eigen::RowVectorXd::LinSpaced(5, 0, 1), t = Eigen::RowVectorXd::Zero(5);
    bool thrown = false;
    try {
        (void)distill::kd(s, t);
    } catch (const distill::error& e) {
        thrown = true;
        CHECK(e.status().code() == errc::bad_rank);
        CHECK(contains(e.what(), "[5]"));
    }
    CHECK(thrown);
    // The 1 x C matrix of the same values is fine.
    const Eigen::MatrixXd s2 = s, t2 = t;
    CHECK(distill::kd(s2, t2).loss > 0.0);
}

// ----------------------------------------------------------------------------------- xtensor

static_assert(!distill::tensor_like<decltype(std::declval<xt::xarray<double>&>() + std::declval<xt::xarray<double>&>())>);
static_assert(!distill::tensor_like<decltype(xt::broadcast(std::declval<xt::xtensor<double, 1>&>(), std::array<std::size_t, 2>{2, 3}))>);
static_assert(!distill::tensor_like<decltype(xt::view(std::declval<xt::xtensor<double, 2>&>(), xt::keep(0, 2), xt::all()))>);
static_assert(distill::view_type_t<xt::xtensor<float, 2>>::static_rank == 2);
static_assert(distill::view_type_t<xt::xarray<float>>::is_dynamic);
static_assert(distill::integer_tensor<xt::xtensor<std::int64_t, 1>>);
static_assert(!distill::writable_tensor<const xt::xtensor<float, 2>>);

TEST_CASE("xtensor: views of containers, adaptors and strided views") {
    xt::xtensor<double, 2> x = xt::zeros<double>({3, 4});
    for (std::size_t i = 0; i < 12; ++i) x.data()[i] = static_cast<double>(i);
    check_view(x, 2, {3, 4}, {4, 1}, x.data());
    xt::xtensor<double, 2, xt::layout_type::column_major> cm = x;
    check_view(cm, 2, {3, 4}, {1, 3}, cm.data());
    CHECK(distill::as_view(cm)(2, 1) == 9.0);

    xt::xarray<double> a = x;
    const auto dynamic = distill::as_view(a);
    static_assert(decltype(dynamic)::is_dynamic);
    CHECK(dynamic.rank() == 2);
    CHECK(dynamic(1, 2) == 6.0);

    auto stepped = xt::view(x, xt::range(1, 3), xt::range(0, 4, 2));
    check_view(stepped, 2, {2, 2}, {4, 2}, x.data() + 4);
    CHECK(distill::as_view(stepped)(1, 1) == 10.0);
    auto flipped = xt::flip(x, 1);
    const auto fv = distill::as_view(flipped);
    CHECK(fv.stride(1) == -1);
    CHECK(fv(0, 0) == 3.0);
    check_view(xt::transpose(x), 2, {4, 3}, {1, 4}, x.data());
    check_view(xt::view(x, 1, xt::all()), 1, {4}, {1}, x.data() + 4);

    std::vector<float> buffer(12);
    auto owned = xt::adapt(buffer, std::vector<std::size_t>{3, 4});
    const auto ov = distill::as_view(owned);
    CHECK(ov.rank() == 2);
    CHECK(ov.data() == buffer.data());
    check_view(xt::adapt(buffer.data(), 12, xt::no_ownership(), std::array<std::size_t, 2>{4, 3}), 2, {4, 3}, {3, 1},
               buffer.data());

    xt::xtensor_fixed<float, xt::xshape<2, 3>> fixed;
    check_view(fixed, 2, {2, 3}, {3, 1}, fixed.data());
}

TEST_CASE_TEMPLATE("xtensor: containers and adaptors give the results of raw pointers", T, float, double) {
    host_problem<T> p(6, 5, 241);
    p.with_labels({4}).with_weight();
    const auto shape = std::array<std::size_t, 2>{6, 5};
    for (bool standardize : {false, true})
        for (reduction red : all_reductions) {
            const distill::kd_options opts{0.5, red, -100, standardize};
            const auto expected = distill::kd(distill::make_view(p.student.data(), 6, 5), distill::make_view(p.teacher.data(), 6, 5),
                                              distill::make_view(p.labels.data(), 6), distill::make_view(p.weight.data(), 6), opts);
            const auto s_adapt = xt::adapt(p.student.data(), 30, xt::no_ownership(), shape);
            const auto t_adapt = xt::adapt(p.teacher.data(), 30, xt::no_ownership(), shape);
            const xt::xtensor<T, 2> s = s_adapt;
            const xt::xarray<T> t = t_adapt;
            const xt::xtensor<T, 2, xt::layout_type::column_major> s_cm = s_adapt;
            const xt::xtensor<std::int64_t, 1> labels = xt::adapt(p.labels, std::vector<std::size_t>{6});
            const xt::xarray<T> weight = xt::adapt(p.weight, std::vector<std::size_t>{6});
            check_identical(distill::kd(s_adapt, t_adapt, labels, weight, opts), expected);
            check_identical(distill::kd(s, t, labels, weight, opts), expected);
            check_identical(distill::kd(s_cm, t, labels, weight, opts), expected);
        }
}

TEST_CASE_TEMPLATE("xtensor: 1 x C and N x 1 (extent-1 dimensions with stride 0)", T, float, double) {
    for (auto [n, c] : {std::array<std::size_t, 2>{1, 9}, std::array<std::size_t, 2>{7, 1}}) {
        host_problem<T> p(static_cast<index_t>(n), static_cast<index_t>(c), 251);
        const distill::kd_options opts{2.0, reduction::none};
        const auto expected = distill::kd(distill::make_view(p.student.data(), n, c), distill::make_view(p.teacher.data(), n, c), opts);
        const xt::xtensor<T, 2> s = xt::adapt(p.student, std::array<std::size_t, 2>{n, c});
        const xt::xtensor<T, 2> t = xt::adapt(p.teacher, std::array<std::size_t, 2>{n, c});
        check_identical(distill::kd(s, t, opts), expected);
    }
}

TEST_CASE_TEMPLATE("xtensor: an xarray of rank other than 2 is a shape error naming its shape", T, float, double) {
    const xt::xarray<T> cube = xt::zeros<T>({2, 3, 4});
    const xt::xarray<T> flat = xt::zeros<T>({6});
    const xt::xarray<T> matrix = xt::zeros<T>({2, 3});
    auto status_of = [](const auto& s, const auto& t) {
        try {
            (void)distill::kd(s, t);
        } catch (const distill::error& e) {
            return e.status();
        }
        return distill::status{};
    };
    check_error(status_of(cube, cube), errc::bad_rank, distill::error_kind::shape, "student", {"student", "[2, 3, 4]"});
    check_error(status_of(flat, flat), errc::bad_rank, distill::error_kind::shape, "student", {"student", "[6]"});
    check_error(status_of(matrix, cube), errc::shape_mismatch, distill::error_kind::shape, "teacher",
                {"teacher", "[2, 3, 4]", "[2, 3]"});
    CHECK(status_of(matrix, matrix).ok());
}

TEST_CASE_TEMPLATE("xtensor: outputs written into xtensor containers", T, float, double) {
    host_problem<T> p(3, 4, 261);
    const distill::kd_options opts{1.0, reduction::none};
    const auto expected = distill::kd(distill::make_view(p.student.data(), 3, 4), distill::make_view(p.teacher.data(), 3, 4), opts);
    xt::xtensor<T, 1> loss = xt::zeros<T>({3});
    xt::xtensor<T, 2, xt::layout_type::column_major> grad = xt::zeros<T>({3, 4});
    xt::xarray<T> grad_t = xt::zeros<T>({1});
    const auto args = distill::make_response_args(distill::make_view(p.student.data(), 3, 4), distill::make_view(p.teacher.data(), 3, 4));
    REQUIRE(distill::run(opts, args, {distill::as_view(loss), distill::as_view(grad), distill::as_view(grad_t)}).ok());
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(same_value(loss(i), expected.row_losses(static_cast<index_t>(i))));
        for (std::size_t k = 0; k < 4; ++k)
            CHECK(same_value(grad(i, k), expected.grad_student(static_cast<index_t>(i), static_cast<index_t>(k))));
    }
    CHECK(same_value(grad_t(0), expected.grad_temperature));
}
