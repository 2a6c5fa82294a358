// examples/schemes/born_again.cpp: born-again networks (Furlanello et al., ICML 2018).
//
// Generation 0 of a small MLP learns from the labels; each later generation, of the same
// architecture and a fresh initialisation, learns from the labels and from the previous
// generation (cross-entropy + kd at T = 2) through distill::born_again, which builds each
// generation right before training it and returns all of them. Prints every generation's test
// accuracy and that of their ensemble (BAN-E: averaged logits). Sanity check (exit 1 on
// failure): generation g was taught by generation g - 1 (and 0 by nobody), and every
// generation beats chance by a margin.
//
//   distill_example_born_again [--quick]
#include <distill/distill.hpp>
#include <distill/schemes.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "toy.hpp"

namespace {

constexpr int features = 16, classes = 8, hidden = 16, batch = 64, generations = 4;

}  // namespace

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    const int epochs = quick ? 25 : 100;
    const toy::dataset train_set = toy::dataset::clusters(512, features, classes, 2.2f, 21);
    const toy::dataset test_set = toy::dataset::clusters(4000, features, classes, 2.2f, 22);

    std::vector<const toy::mlp*> taught_by;  // the teacher each generation was given
    const auto make = [](std::size_t g) { return toy::mlp(features, hidden, classes, 50 + static_cast<unsigned>(g)); };
    const auto train = [&](std::size_t, toy::mlp& student, const toy::mlp* teacher) {
        taught_by.push_back(teacher);
        const float alpha = teacher ? 0.5f : 0.0f;
        std::vector<float> teacher_logits;
        if (teacher) teacher_logits = toy::mlp(*teacher).forward(train_set.x.data(), train_set.rows);
        distill::kd_float_options kd_opts;
        kd_opts.temperature = 2.0f;
        std::vector<float> grad(batch * classes);
        for (int epoch = 0; epoch < epochs; ++epoch)
            for (int start = 0; start + batch <= train_set.rows; start += batch) {
                const std::vector<float> z = student.forward(train_set.x.data() + static_cast<std::size_t>(start) * features, batch);
                const auto s = distill::make_view(z.data(), batch, classes);
                const auto ce = distill::ce(s, distill::make_view(train_set.y.data() + start, batch));
                for (std::size_t e = 0; e < grad.size(); ++e) grad[e] = (1 - alpha) * ce.grad_student.data()[e];
                if (teacher) {
                    const auto t = distill::make_view(teacher_logits.data() + static_cast<std::size_t>(start) * classes, batch, classes);
                    const auto kd = distill::kd(s, t, kd_opts);
                    for (std::size_t e = 0; e < grad.size(); ++e) grad[e] += alpha * kd.grad_student.data()[e];
                }
                student.backward(grad.data());
                student.step(0.03f);
            }
    };
    std::vector<toy::mlp> models = distill::born_again(generations, make, train);

    // The vector was reserved before the loop and moved out, so the teachers' addresses are those of
    // the returned generations.
    bool ok = static_cast<int>(models.size()) == generations && taught_by.size() == models.size();
    std::vector<float> ensemble(static_cast<std::size_t>(test_set.rows) * classes, 0.0f);
    std::printf("%d generations of hidden %d, %d epochs each, %d training rows\n\n", generations, hidden, epochs, train_set.rows);
    for (int g = 0; g < static_cast<int>(models.size()); ++g) {
        const std::vector<float> z = models[static_cast<std::size_t>(g)].forward(test_set.x.data(), test_set.rows);
        for (std::size_t e = 0; e < z.size(); ++e) ensemble[e] += z[e] / generations;
        const double acc = toy::accuracy(z, test_set.y, classes);
        std::printf("generation %d (taught by %s)   %6.2f%%\n", g,
                    g == 0 ? "labels      " : ("generation " + std::to_string(g - 1)).c_str(), 100 * acc);
        ok = ok && acc > 2.0 / classes && taught_by[static_cast<std::size_t>(g)] == (g == 0 ? nullptr : &models[static_cast<std::size_t>(g) - 1]);
    }
    std::printf("ensemble of all generations (BAN-E)       %6.2f%%\n", 100 * toy::accuracy(ensemble, test_set.y, classes));
    std::printf("\nsanity: generation g taught by g - 1, every generation beats chance by 2x: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
