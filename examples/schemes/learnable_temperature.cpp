// examples/schemes/learnable_temperature.cpp: CTKD (Li et al., AAAI 2023), a temperature learned
// adversarially with a curriculum (docs/schemes/learnable_temperature.md).
//
// A teacher MLP is trained on Gaussian clusters; then two identical students learn from it with
// 0.1 * CE + 0.9 * KD (CTKD's -r 0.1 -a 0.9): one with the fixed T = 4, one whose T is learned.
// The learned T starts where CTKD starts (theta = 1, T = 1 + 20 sigmoid(1) = 15.62) and is updated
// after every batch with the reversed gradient -lambda(epoch) * 0.9 * d KD / d theta, where
// lambda rises from 0 to 1 over the first 10 epochs; the update uses the student's SGD settings
// (learning rate, momentum 0.9, weight decay 5e-4), as CTKD does.
//
// Prints lambda, T and the test accuracy per epoch. Exits non-zero if T did not move, left its
// range (1, 21), or the learning rule did not ascend the KD loss on average once lambda > 0.
//
//   distill_example_learnable_temperature [--quick]
#include <distill/distill.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "toy.hpp"

namespace {

constexpr int features = 16, classes = 10;
constexpr float gamma_ce = 0.1f, alpha_kd = 0.9f;  // CTKD's -r 0.1 -a 0.9
constexpr float learning_rate = 0.02f;
constexpr float fixed_temperature = 4.0f;          // CTKD's --kd_T, the baseline

/// Rows [begin, begin + n) of a permutation, gathered: inputs, labels and the teacher's logits (if any).
struct batch {
    std::vector<float> x, teacher;
    std::vector<std::int64_t> y;
};
batch gather(const toy::dataset& d, const std::vector<float>& teacher_logits, const std::vector<int>& order, int begin,
             int n) {
    batch b;
    for (int k = begin; k < begin + n; ++k) {
        const auto i = static_cast<std::size_t>(order[static_cast<std::size_t>(k)]);
        b.x.insert(b.x.end(), d.x.begin() + static_cast<long>(i * features), d.x.begin() + static_cast<long>((i + 1) * features));
        if (!teacher_logits.empty())
            b.teacher.insert(b.teacher.end(), teacher_logits.begin() + static_cast<long>(i * classes),
                             teacher_logits.begin() + static_cast<long>((i + 1) * classes));
        b.y.push_back(d.y[i]);
    }
    return b;
}

double test_accuracy(toy::mlp& model, const toy::dataset& test) {
    return toy::accuracy(model.forward(test.x.data(), test.rows), test.y, classes);
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    const int train_rows = quick ? 4000 : 12000, teacher_epochs = quick ? 20 : 40, epochs = quick ? 20 : 60;
    const int batch_size = 64;
    const toy::dataset train = toy::dataset::clusters(train_rows, features, classes, 1.3f, 11);
    const toy::dataset test = toy::dataset::clusters(2000, features, classes, 1.3f, 12);
    std::mt19937 rng(5);
    std::vector<int> order(static_cast<std::size_t>(train.rows));
    std::iota(order.begin(), order.end(), 0);

    // The teacher: a wide MLP trained with cross-entropy.
    toy::mlp teacher(features, 96, classes, 1);
    for (int epoch = 0; epoch < teacher_epochs; ++epoch) {
        std::shuffle(order.begin(), order.end(), rng);
        for (int begin = 0; begin + batch_size <= train.rows; begin += batch_size) {
            const batch b = gather(train, {}, order, begin, batch_size);
            const auto logits = teacher.forward(b.x.data(), batch_size);
            const auto ce = distill::ce(distill::make_view(logits.data(), batch_size, classes),
                                        distill::make_view(b.y.data(), batch_size), distill::ce_float_options{});
            teacher.backward(ce.grad_student.data());
            teacher.step(0.01f);
        }
    }
    const std::vector<float> teacher_logits = teacher.forward(train.x.data(), train.rows);
    const double teacher_acc = test_accuracy(teacher, test);

    // Two identical students (same initial weights, same batches): fixed T and CTKD's learned T.
    toy::mlp fixed(features, 4, classes, 2), learned(features, 4, classes, 2);
    distill::learnable_temperature_float temp{.momentum = 0.9f, .weight_decay = 5e-4f};  // theta = 1, lambda 0 -> 1 over 10 epochs
    if (const distill::status s = temp.check(); !s) {
        std::fprintf(stderr, "%s\n", s.message());
        return 1;
    }
    const float t_start = temp.temperature();
    double ascent_sum = 0;  // sum over batches with lambda > 0 of (KD after the T step - KD before)
    int ascent_batches = 0;

    std::printf("teacher (16-96-10 MLP): test accuracy %.3f\n", teacher_acc);
    std::printf("students (16-4-10 MLP): 0.1 CE + 0.9 KD, fixed T = %.0f vs CTKD's learned T (start %.2f)\n\n",
                static_cast<double>(fixed_temperature), static_cast<double>(t_start));
    std::printf("epoch  lambda  T (end)   mean KD   acc fixed-T  acc CTKD\n");
    for (int epoch = 1; epoch <= epochs; ++epoch) {  // CTKD counts epochs from 1
        const float lambda = temp.lambda(epoch);
        std::shuffle(order.begin(), order.end(), rng);
        double kd_sum = 0;
        int batches = 0;
        for (int begin = 0; begin + batch_size <= train.rows; begin += batch_size, ++batches) {
            const batch b = gather(train, teacher_logits, order, begin, batch_size);
            const auto t_view = distill::make_view(b.teacher.data(), batch_size, classes);
            const auto y_view = distill::make_view(b.y.data(), batch_size);
            for (toy::mlp* model : {&fixed, &learned}) {
                const bool is_learned = model == &learned;
                const float t = is_learned ? temp.temperature() : fixed_temperature;
                auto logits = model->forward(b.x.data(), batch_size);
                const auto s_view = distill::make_view(logits.data(), batch_size, classes);
                const auto ce = distill::ce(s_view, y_view, distill::ce_float_options{});
                const auto kd = distill::kd(s_view, t_view, distill::kd_float_options{.temperature = t});
                std::vector<float> grad(static_cast<std::size_t>(batch_size) * classes);
                for (std::size_t k = 0; k < grad.size(); ++k)
                    grad[k] = gamma_ce * ce.grad_student.data()[k] + alpha_kd * kd.grad_student.data()[k];
                model->backward(grad.data());
                model->step(learning_rate);
                if (!is_learned) continue;
                kd_sum += static_cast<double>(kd.loss);
                // The temperature's step: the reversed gradient of the objective's KD term.
                temp.apply_gradient(kd, epoch, learning_rate, alpha_kd);
                if (lambda > 0.0f) {  // did the step raise this batch's KD loss (same logits, new T)?
                    const auto again = distill::kd(s_view, t_view, distill::kd_float_options{.temperature = temp.temperature()});
                    ascent_sum += static_cast<double>(again.loss) - static_cast<double>(kd.loss);
                    ++ascent_batches;
                }
            }
        }
        std::printf("%5d  %6.3f  %7.3f  %8.4f  %11.3f  %8.3f\n", epoch, static_cast<double>(lambda),
                    static_cast<double>(temp.temperature()), kd_sum / batches, test_accuracy(fixed, test),
                    test_accuracy(learned, test));
    }

    const float t_end = temp.temperature();
    const double fixed_acc = test_accuracy(fixed, test), learned_acc = test_accuracy(learned, test);
    std::printf("\nteacher %.3f | student fixed T = %.0f: %.3f | student CTKD: %.3f (T %.2f -> %.2f)\n", teacher_acc,
                static_cast<double>(fixed_temperature), fixed_acc, learned_acc, static_cast<double>(t_start),
                static_cast<double>(t_end));
    std::printf("mean change of a batch's KD loss from the temperature step (lambda > 0): %+.3g over %d batches\n",
                ascent_batches > 0 ? ascent_sum / ascent_batches : 0.0, ascent_batches);

    bool ok = true;
    if (!(std::abs(t_end - t_start) > 0.05f)) {
        std::fprintf(stderr, "check failed: the temperature did not move (%.4f -> %.4f)\n", static_cast<double>(t_start),
                     static_cast<double>(t_end));
        ok = false;
    }
    if (!(t_end > temp.t_min && t_end < temp.t_min + temp.t_span)) {
        std::fprintf(stderr, "check failed: T = %.4f left (%.0f, %.0f)\n", static_cast<double>(t_end),
                     static_cast<double>(temp.t_min), static_cast<double>(temp.t_min + temp.t_span));
        ok = false;
    }
    if (!(ascent_sum > 0)) {
        std::fprintf(stderr, "check failed: the temperature steps did not ascend the KD loss (%g)\n", ascent_sum);
        ok = false;
    }
    return ok ? 0 : 1;
}
