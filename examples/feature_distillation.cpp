// Feature and relation distillation with xtensor inputs: attention transfer (AT) and
// similarity-preserving KD (SP) on 4-D feature maps, relational KD (RKD) on embeddings.
//
// A real training step would back-propagate the gradients distill returns into the student
// network. To stay self-contained, this example treats the student's features themselves as the
// parameters and takes plain gradient steps on them: each loss falls, which shows the gradients
// point the right way. Teacher and student differ in width and resolution, as they do in practice:
// AT pools the larger map to the smaller one, SP and RKD compare batch relations, so the feature
// sizes need not match.
#include <distill/eigen.hpp>
#include <distill/xtensor.hpp>

#include <xtensor/xrandom.hpp>
#include <xtensor/xtensor.hpp>

#include <cstdio>

namespace {

/// x -= step * grad, element by element (grad: a distill::tensor of x's shape).
template <class X, class G>
void descend(X& x, const G& grad, float step) {
    const float* g = grad.data();
    for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] -= step * g[i];
}

}  // namespace

int main() {
    xt::random::seed(7);
    // A batch of 8 images: the student's block has 16 channels at 8 x 8, the teacher's 32 at 4 x 4.
    xt::xtensor<float, 4> student_maps = xt::random::randn<float>({8, 16, 8, 8});
    const xt::xtensor<float, 4> teacher_maps = xt::random::randn<float>({8, 32, 4, 4});
    // Penultimate-layer embeddings: 64-wide student, 128-wide teacher.
    xt::xtensor<float, 2> student_embedding = xt::random::randn<float>({8, 64});
    const xt::xtensor<float, 2> teacher_embedding = xt::random::randn<float>({8, 128});

    const distill::at_float_options at_options{};   // p = 2, as in the paper
    const distill::sp_float_options sp_options{};
    const distill::rkd_float_options rkd_options{};  // distance 25, angle 50 (RepDistiller)

    std::printf("step   at(maps)      sp(maps)      rkd(embeddings)\n");
    float first[3] = {}, last[3] = {};
    for (int step = 0; step <= 40; ++step) {
        const auto at = distill::at(student_maps, teacher_maps, at_options);
        const auto sp = distill::sp(student_maps, teacher_maps, sp_options);
        const auto rkd = distill::rkd(student_embedding, teacher_embedding, rkd_options);
        const float losses[3] = {at.loss, sp.loss, rkd.loss};
        for (int k = 0; k < 3; ++k) (step == 0 ? first : last)[k] = losses[k];
        if (step % 10 == 0) std::printf("%4d   %.6f      %.6f      %.6f\n", step, at.loss, sp.loss, rkd.loss);
        // AT's and SP's gradients both flow into the same maps: their sum is the objective's.
        descend(student_maps, at.grad_student, 200.0f);
        descend(student_maps, sp.grad_student, 2000.0f);
        descend(student_embedding, rkd.grad_student, 0.5f);
    }
    const char* names[3] = {"at", "sp", "rkd"};
    bool all_fell = true;
    for (int k = 0; k < 3; ++k) {
        std::printf("%-4s %.6f -> %.6f (%.0f%% lower)\n", names[k], first[k], last[k], 100.0 * (1.0 - last[k] / first[k]));
        all_fell = all_fell && last[k] < 0.8f * first[k];
    }
    std::printf(all_fell ? "every loss fell: the gradients point downhill\n" : "a loss did not fall: wrong gradients?\n");
    return all_fell ? 0 : 1;
}
