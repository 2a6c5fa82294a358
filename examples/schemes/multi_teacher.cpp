// Multi-teacher distillation: three teachers of different widths and seeds are trained on toy
// clusters, then a small student learns from scratch (cross-entropy) and from their ensemble
// (cross-entropy + distill::multi_teacher in each combination mode). Prints a table of test
// accuracies and the distillation loss of the first and last epoch; exits non-zero if a
// distillation loss does not fall or the per-row teacher weights do not sum to 1.
//
//   distill_example_multi_teacher [--quick]
//
// The teachers' logits on the training set are computed once; each batch's distillation term
// runs through the allocation-free check / run steps on caller buffers.
#include <distill/distill.hpp>
#include <distill/schemes.hpp>

#include "toy.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <vector>

namespace {

struct config {
    int train_rows, test_rows, teacher_epochs, student_epochs;
};

constexpr int features = 16, classes = 10, batch = 100;
constexpr float noise = 1.6f;

/// Mean cross-entropy training of a model for some epochs.
void train_ce(toy::mlp& model, const toy::dataset& data, int epochs, float learning_rate) {
    for (int epoch = 0; epoch < epochs; ++epoch)
        for (int start = 0; start + batch <= data.rows; start += batch) {
            const auto logits = model.forward(data.x.data() + static_cast<std::size_t>(start) * features, batch);
            const auto result = distill::ce(distill::make_view(logits.data(), batch, classes),
                                            std::span<const std::int64_t>(data.y.data() + start, batch));
            model.backward(result.grad_student.data());
            model.step(learning_rate);
        }
}

double test_accuracy(toy::mlp& model, const toy::dataset& test) {
    return toy::accuracy(model.forward(test.x.data(), test.rows), test.y, classes);
}

struct student_run {
    double accuracy = 0, first_kd = 0, last_kd = 0;
    bool weights_ok = true;
};

/// A student trained on (1 - alpha) CE + alpha multi_teacher(T = 4) against the teachers' logits
/// (alpha = 0: from scratch).
student_run train_student(const toy::dataset& train, const toy::dataset& test,
                          const std::vector<std::vector<float>>& teacher_logits, distill::ensemble_mode mode,
                          float alpha, int epochs) {
    toy::mlp student(features, 12, classes, 7);  // the same initial weights for every run
    const int k_count = static_cast<int>(teacher_logits.size());
    const distill::multi_teacher_options options{.temperature = 4.0, .mode = mode};
    // Caller-owned outputs of the run step: the loss and the per-row teacher weights; the gradient
    // goes straight into the CE gradient's buffer (grad_scale = alpha, accumulate).
    std::vector<float> kd_loss(1), ensemble_weights(static_cast<std::size_t>(batch) * k_count);
    std::vector<distill::any_view<const float>> teachers(static_cast<std::size_t>(k_count));
    student_run run;
    for (int epoch = 0; epoch < epochs; ++epoch) {
        double kd_sum = 0;
        int batches = 0;
        for (int start = 0; start + batch <= train.rows; start += batch, ++batches) {
            auto logits = student.forward(train.x.data() + static_cast<std::size_t>(start) * features, batch);
            const std::span<const std::int64_t> labels(train.y.data() + start, batch);
            auto ce = distill::ce(distill::make_view(logits.data(), batch, classes), labels);
            std::vector<float> grad(ce.grad_student.data(), ce.grad_student.data() + ce.grad_student.size());
            for (float& g : grad) g *= 1.0f - alpha;
            if (alpha > 0.0f) {
                for (int k = 0; k < k_count; ++k)
                    teachers[static_cast<std::size_t>(k)] = distill::make_view(
                        teacher_logits[static_cast<std::size_t>(k)].data() + static_cast<std::size_t>(start) * classes,
                        batch, classes);
                const distill::multi_teacher_args<float> args{distill::make_view(logits.data(), batch, classes), teachers,
                                                              distill::make_view(labels.data(), batch)};
                const distill::multi_teacher_outputs<float> outs{distill::make_view(kd_loss.data(), 1),
                                                                 distill::make_view(grad.data(), batch, classes),
                                                                 distill::make_view(ensemble_weights.data(), batch, k_count),
                                                                 alpha, true};  // grad += alpha * d kd / d logits
                if (const distill::status s = distill::run(options, args, outs); !s) {
                    std::fprintf(stderr, "multi_teacher: %s\n", s.message());
                    run.weights_ok = false;
                    return run;
                }
                kd_sum += kd_loss[0];
                for (int i = 0; i < batch; ++i) {
                    float total = 0;
                    for (int k = 0; k < k_count; ++k) total += ensemble_weights[static_cast<std::size_t>(i * k_count + k)];
                    run.weights_ok = run.weights_ok && std::abs(total - 1.0f) < 1e-5f;
                }
            }
            student.backward(grad.data());
            student.step(0.05f);
        }
        if (epoch == 0) run.first_kd = kd_sum / batches;
        run.last_kd = kd_sum / batches;
    }
    run.accuracy = test_accuracy(student, test);
    return run;
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    const config cfg = quick ? config{2000, 2000, 15, 15} : config{8000, 8000, 40, 40};
    const auto train = toy::dataset::clusters(cfg.train_rows, features, classes, noise, 1);
    const auto test = toy::dataset::clusters(cfg.test_rows, features, classes, noise, 2);

    // Teachers of different widths and seeds; their training-set logits are kept for distillation.
    const int widths[] = {96, 64, 48};
    std::vector<std::vector<float>> teacher_logits;
    std::vector<double> teacher_accuracy;
    std::vector<std::vector<float>> teacher_test_logits;
    for (int k = 0; k < 3; ++k) {
        toy::mlp teacher(features, widths[k], classes, 100u + static_cast<unsigned>(k));
        train_ce(teacher, train, cfg.teacher_epochs, 0.02f);
        teacher_logits.push_back(teacher.forward(train.x.data(), train.rows));
        teacher_test_logits.push_back(teacher.forward(test.x.data(), test.rows));
        teacher_accuracy.push_back(toy::accuracy(teacher_test_logits.back(), test.y, classes));
    }
    // The ensemble itself on the test set (average of probabilities, T = 1): its arg-max.
    std::vector<float> ensemble(static_cast<std::size_t>(test.rows) * classes, 0.0f);
    for (const auto& logits : teacher_test_logits)
        for (int i = 0; i < test.rows; ++i) {
            const float* z = logits.data() + static_cast<std::size_t>(i) * classes;
            float top = z[0], sum = 0;
            for (int c = 1; c < classes; ++c) top = std::max(top, z[c]);
            for (int c = 0; c < classes; ++c) sum += std::exp(z[c] - top);
            for (int c = 0; c < classes; ++c) ensemble[static_cast<std::size_t>(i) * classes + c] += std::exp(z[c] - top) / sum;
        }

    std::printf("multi-teacher distillation on toy clusters (%d features, %d classes, %d train / %d test rows)\n\n",
                features, classes, train.rows, test.rows);
    std::printf("%-40s %9s %14s\n", "model", "test acc", "kd loss 1st/last epoch");
    for (int k = 0; k < 3; ++k)
        std::printf("teacher %d (hidden %3d)                   %8.2f%%\n", k, widths[k], 100 * teacher_accuracy[static_cast<std::size_t>(k)]);
    std::printf("%-40s %8.2f%%\n", "ensemble of the 3 teachers", 100 * toy::accuracy(ensemble, test.y, classes));

    const auto scratch = train_student(train, test, teacher_logits, distill::ensemble_mode::average_probabilities, 0.0f,
                                       cfg.student_epochs);
    std::printf("%-40s %8.2f%%\n", "student (hidden 12) from scratch", 100 * scratch.accuracy);
    struct named_mode {
        const char* name;
        distill::ensemble_mode mode;
    };
    const named_mode modes[] = {{"average_probabilities", distill::ensemble_mode::average_probabilities},
                                {"average_logits", distill::ensemble_mode::average_logits},
                                {"confidence_weighted", distill::ensemble_mode::confidence_weighted},
                                {"best_teacher", distill::ensemble_mode::best_teacher}};
    bool ok = true;
    for (const auto& m : modes) {
        const auto r = train_student(train, test, teacher_logits, m.mode, 0.7f, cfg.student_epochs);
        char label[64];
        std::snprintf(label, sizeof label, "student distilled, %s", m.name);
        std::printf("%-40s %8.2f%%   %.4f / %.4f\n", label, 100 * r.accuracy, r.first_kd, r.last_kd);
        const bool falls = r.last_kd < r.first_kd;
        if (!falls) std::printf("  CHECK FAILED: the distillation loss did not fall\n");
        if (!r.weights_ok) std::printf("  CHECK FAILED: the per-row teacher weights do not sum to 1\n");
        ok = ok && falls && r.weights_ok;
    }
    std::printf("\n%s\n", ok ? "every distillation loss fell; the per-row teacher weights sum to 1" : "sanity check failed");
    return ok ? 0 : 1;
}
