// examples/schemes/mutual_learning.cpp: deep mutual learning (Zhang et al., CVPR 2018).
//
// Three small MLPs learn the same toy problem twice from the same initial weights: once
// independently (cross-entropy each), once as DML peers (cross-entropy + the mean KL to the
// other two, from one distill::dml run step per batch into reused buffers). Prints each peer's
// test accuracy and how much the peers disagree (mean KL between their test predictions).
// Sanity check (exit 1 on failure): every peer beats chance by a margin, and DML peers disagree
// less than independent ones, which is what the KL term optimises.
//
//   distill_example_mutual_learning [--quick]
#include <distill/distill.hpp>
#include <distill/schemes.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "toy.hpp"

namespace {

constexpr int peers = 3, features = 16, classes = 8, hidden = 24, batch = 64;

/// Mean over rows and ordered pairs of KL(p_l || p_k) between the peers' test predictions.
double disagreement(std::vector<toy::mlp>& models, const toy::dataset& test) {
    std::vector<std::vector<double>> probs;
    for (auto& m : models) {
        const std::vector<float> z = m.forward(test.x.data(), test.rows);
        std::vector<double> p(z.size());
        for (int i = 0; i < test.rows; ++i) {
            const float* row = z.data() + static_cast<std::size_t>(i) * classes;
            double mx = row[0], sum = 0;
            for (int c = 1; c < classes; ++c) mx = std::max(mx, static_cast<double>(row[c]));
            for (int c = 0; c < classes; ++c) sum += std::exp(row[c] - mx);
            for (int c = 0; c < classes; ++c) p[static_cast<std::size_t>(i) * classes + c] = std::exp(row[c] - mx) / sum;
        }
        probs.push_back(std::move(p));
    }
    double kl = 0;
    for (std::size_t k = 0; k < probs.size(); ++k)
        for (std::size_t l = 0; l < probs.size(); ++l)
            if (k != l)
                for (std::size_t e = 0; e < probs[k].size(); ++e)
                    kl += probs[l][e] * std::log((probs[l][e] + 1e-12) / (probs[k][e] + 1e-12));
    return kl / (test.rows * static_cast<double>(probs.size() * (probs.size() - 1)));
}

/// Trains the peers for `epochs`, with DML (kl_weight > 0) or independently (kl_weight = 0:
/// the same call then is plain cross-entropy for each peer).
void train(std::vector<toy::mlp>& models, const toy::dataset& data, int epochs, float kl_weight) {
    distill::dml_float_options opts;
    opts.kl_weight = kl_weight;
    opts.temperature = 1.0f;
    // Buffers reused by every step: the run step allocates nothing.
    std::vector<std::vector<float>> logits(peers), grads(peers, std::vector<float>(batch * classes));
    std::vector<float> loss(peers);
    for (int epoch = 0; epoch < epochs; ++epoch)
        for (int start = 0; start + batch <= data.rows; start += batch) {
            const float* x = data.x.data() + static_cast<std::size_t>(start) * features;
            std::vector<distill::any_view<const float>> in;
            std::vector<distill::any_view<float>> out;
            for (int k = 0; k < peers; ++k) {
                logits[k] = models[k].forward(x, batch);
                in.push_back(distill::make_view(logits[k].data(), batch, classes));
                out.push_back(distill::make_view(grads[k].data(), batch, classes));
            }
            const distill::dml_args<float> args{in, distill::make_view(data.y.data() + start, batch)};
            const distill::dml_outputs<float> outs{distill::make_view(loss.data(), peers), {}, out};
            if (const distill::status s = distill::run(opts, args, outs); !s) {
                std::fprintf(stderr, "dml: %s\n", s.message());
                std::exit(2);
            }
            for (int k = 0; k < peers; ++k) {
                models[k].backward(grads[k].data());
                models[k].step(0.05f);
            }
        }
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    const int epochs = quick ? 30 : 120;
    const toy::dataset train_set = toy::dataset::clusters(512, features, classes, 2.0f, 7);
    const toy::dataset test_set = toy::dataset::clusters(4000, features, classes, 2.0f, 8);

    std::vector<toy::mlp> independent, mutual;
    for (int k = 0; k < peers; ++k) independent.emplace_back(features, hidden, classes, 100 + k);
    mutual = independent;  // the same initial weights
    train(independent, train_set, epochs, 0.0f);
    train(mutual, train_set, epochs, 1.0f);

    bool ok = true;
    std::printf("%d peers, %d epochs, %d training rows, %d classes\n\n", peers, epochs, train_set.rows, classes);
    std::printf("%-12s %9s %9s %9s %9s %14s\n", "training", "peer 0", "peer 1", "peer 2", "mean", "disagreement");
    for (auto* group : {&independent, &mutual}) {
        double mean = 0;
        std::printf("%-12s", group == &mutual ? "DML" : "independent");
        for (auto& m : *group) {
            const double acc = toy::accuracy(m.forward(test_set.x.data(), test_set.rows), test_set.y, classes);
            std::printf(" %8.2f%%", 100 * acc);
            mean += acc / peers;
            ok = ok && acc > 2.0 / classes;
        }
        std::printf(" %8.2f%% %14.4f\n", 100 * mean, disagreement(*group, test_set));
    }
    const bool closer = disagreement(mutual, test_set) < disagreement(independent, test_set);
    ok = ok && closer;
    std::printf("\nsanity: every peer beats chance by 2x, DML peers agree more: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
