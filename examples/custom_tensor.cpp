// Making your own tensor type usable by distill: one trait specialisation.
//
// distill reads every tensor through distill::tensor_adapter<T>::view, which
// returns a distill::strided_view (pointer, extents, strides in elements, memory
// space). Specialise it once for your type and every loss accepts it.
#include <distill/distill.hpp>

#include <cstdio>
#include <vector>

namespace my_engine {

/// A user's own row-major matrix class, as found in many training engines.
class matrix {
public:
    matrix(long rows, long cols) : rows_(rows), cols_(cols), values_(static_cast<std::size_t>(rows * cols)) {}
    float* data() { return values_.data(); }
    const float* data() const { return values_.data(); }
    long rows() const { return rows_; }
    long cols() const { return cols_; }
    float& at(long r, long c) { return values_[static_cast<std::size_t>(r * cols_ + c)]; }

private:
    long rows_, cols_;
    std::vector<float> values_;
};

}  // namespace my_engine

// ---- the few lines that make my_engine::matrix a distill tensor -------------
template <>
struct distill::tensor_adapter<my_engine::matrix> {
    template <class M>  // M is matrix or const matrix: the view's element constness follows
    static auto view(M& m) {
        return distill::make_view(m.data(), m.rows(), m.cols());
    }
};
// ------------------------------------------------------------------------------

static_assert(distill::real_tensor<my_engine::matrix>);

int main() {
    my_engine::matrix student(2, 3), teacher(2, 3), grad(2, 3);
    const float s[] = {0.5f, -1.0f, 2.0f, 1.5f, 0.0f, -0.5f};
    const float t[] = {1.0f, -2.0f, 3.0f, 0.0f, 1.0f, -1.0f};
    for (long i = 0; i < 6; ++i) {
        student.data()[i] = s[i];
        teacher.data()[i] = t[i];
    }

    // Convenience layer: allocates the outputs.
    const auto r = distill::kd(student, teacher, distill::kd_options{.temperature = 2.0});
    std::printf("kd loss = %.6f\n", r.loss);

    // Check / run layer: caller-owned outputs, no allocation, a status instead of exceptions.
    float loss = 0;
    const distill::response_outputs<float> outputs{distill::make_view(&loss, 1), distill::as_view(grad)};
    const distill::status st = distill::run(distill::kd_options{.temperature = 2.0},
                                               distill::make_response_args(student, teacher), outputs);
    if (!st) {
        std::printf("error: %s\n", st.message());
        return 1;
    }
    std::printf("kd loss = %.6f (run step), d loss / d student[0][0] = %.6f\n", loss, grad.at(0, 0));
    return loss == r.loss ? 0 : 1;
}
