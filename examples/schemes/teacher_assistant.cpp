// examples/schemes/teacher_assistant.cpp: the teacher-assistant chain (Mirzadeh et al., AAAI 2020).
//
// A wide MLP teacher is trained on the labels; then a small student is distilled two ways from
// the same initial weights: directly from the teacher, and through a mid-size assistant
// (teacher -> assistant -> student), both with distill::teacher_assistant_chain and one training
// step (cross-entropy + kd at T = 4) that receives the previous model as its teacher.
// Prints every model's test accuracy. Sanity check (exit 1 on failure): the chain ran its steps
// in order with the right teachers, and every model beats chance by a margin.
//
//   distill_example_teacher_assistant [--quick]
#include <distill/distill.hpp>
#include <distill/schemes.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "toy.hpp"

namespace {

constexpr int features = 16, classes = 8, batch = 64;

/// One training step of the chain: `epochs` of SGD on (1 - alpha) CE + alpha kd(T) with the
/// teacher's logits (none: CE only). The teacher is const, so its logits come from a copy.
struct trainer {
    const toy::dataset& data;
    int epochs;
    std::vector<std::string>* log;

    void operator()(std::size_t step, toy::mlp& student, const toy::mlp* teacher) const {
        const float alpha = teacher ? 0.7f : 0.0f;
        std::vector<float> teacher_logits;
        if (teacher) teacher_logits = toy::mlp(*teacher).forward(data.x.data(), data.rows);
        if (log) log->push_back(std::to_string(step) + ": hidden " + std::to_string(student.hidden) + " <- " +
                                (teacher ? "hidden " + std::to_string(teacher->hidden) : std::string("labels")));
        distill::kd_float_options kd_opts;
        kd_opts.temperature = 4.0f;
        std::vector<float> grad(batch * classes);
        for (int epoch = 0; epoch < epochs; ++epoch)
            for (int start = 0; start + batch <= data.rows; start += batch) {
                const std::vector<float> z = student.forward(data.x.data() + static_cast<std::size_t>(start) * features, batch);
                const auto s = distill::make_view(z.data(), batch, classes);
                const auto ce = distill::ce(s, distill::make_view(data.y.data() + start, batch));
                for (std::size_t e = 0; e < grad.size(); ++e) grad[e] = (1 - alpha) * ce.grad_student.data()[e];
                if (teacher) {
                    const auto t = distill::make_view(teacher_logits.data() + static_cast<std::size_t>(start) * classes, batch, classes);
                    const auto kd = distill::kd(s, t, kd_opts);
                    for (std::size_t e = 0; e < grad.size(); ++e) grad[e] += alpha * kd.grad_student.data()[e];
                }
                student.backward(grad.data());
                student.step(0.03f);
            }
    }
};

}  // namespace

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    const int epochs = quick ? 25 : 100;
    const toy::dataset train_set = toy::dataset::clusters(1024, features, classes, 1.8f, 11);
    const toy::dataset test_set = toy::dataset::clusters(4000, features, classes, 1.8f, 12);
    const auto accuracy = [&](toy::mlp m) { return toy::accuracy(m.forward(test_set.x.data(), test_set.rows), test_set.y, classes); };

    toy::mlp teacher(features, 128, classes, 1);
    trainer{train_set, epochs, nullptr}(0, teacher, nullptr);

    std::vector<std::string> log;
    const trainer step{train_set, epochs, &log};
    // teacher -> student directly, and teacher -> assistant -> student; the student starts from
    // the same weights both times. The range form trains models the caller built.
    const toy::mlp student_init(features, 4, classes, 3);
    std::vector<toy::mlp> direct{student_init};
    std::vector<toy::mlp> chain{toy::mlp(features, 24, classes, 2), student_init};
    distill::teacher_assistant_chain(teacher, direct, step);
    distill::teacher_assistant_chain(teacher, chain, step);
    // The student trained on the labels alone, for reference.
    toy::mlp alone = student_init;
    trainer{train_set, epochs, nullptr}(0, alone, nullptr);

    const double acc[] = {accuracy(teacher), accuracy(chain[0]), accuracy(alone), accuracy(direct[0]), accuracy(chain[1])};
    std::printf("%d epochs per model, %d training rows, %d classes\n\n", epochs, train_set.rows, classes);
    std::printf("teacher (hidden 128)                        %6.2f%%\n", 100 * acc[0]);
    std::printf("assistant (hidden 24), taught by teacher    %6.2f%%\n", 100 * acc[1]);
    std::printf("student (hidden 4), labels only             %6.2f%%\n", 100 * acc[2]);
    std::printf("student, teacher -> student                 %6.2f%%\n", 100 * acc[3]);
    std::printf("student, teacher -> assistant -> student    %6.2f%%\n", 100 * acc[4]);
    std::printf("\ncalls:\n");
    for (const auto& line : log) std::printf("  %s\n", line.c_str());

    const std::vector<std::string> expected{"0: hidden 4 <- hidden 128", "0: hidden 24 <- hidden 128", "1: hidden 4 <- hidden 24"};
    bool ok = log == expected;
    for (double a : acc) ok = ok && a > 2.0 / classes;
    std::printf("\nsanity: chain order and teachers, every model beats chance by 2x: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
