// examples/schemes/self_distillation.cpp: self-distillation by deep supervision ("Be Your Own
// Teacher", Zhang et al., ICCV 2019).
//
// A network of three ReLU blocks has an exit after each block (a bottleneck layer whose output is
// the exit's feature, then a linear classifier). It is trained twice from the same weights: with
// each exit on cross-entropy alone (a distill::objective of one ce term per exit), and with BYOT
// (distill::self_distillation: cross-entropy, KL to the deepest exit and a feature hint to the
// deepest exit's bottleneck features, from one run step per batch into reused buffers). Prints
// each exit's test accuracy and how far the shallow exits' predictions are from the deepest one's.
// Sanity check (exit 1 on failure): every exit beats chance by 2x, and under BYOT the shallow
// exits are closer (mean KL on the test set) to the deepest exit than under cross-entropy alone,
// which is what the KL term optimises.
//
//   distill_example_self_distillation [--quick]
#include <distill/distill.hpp>
#include <distill/schemes.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "toy.hpp"

namespace {

constexpr int exits = 3, features = 16, classes = 8, width = 32, bottleneck = 16, batch = 64;

/// y = x W + b (then ReLU when `relu`), SGD with momentum; backward returns d loss / d x.
struct dense {
    int in, out;
    bool relu;
    std::vector<float> w, b, gw, gb, vw, vb, x, y;

    dense(int in_, int out_, bool relu_, unsigned seed)
        : in(in_), out(out_), relu(relu_), w(static_cast<std::size_t>(in_) * out_), b(static_cast<std::size_t>(out_), 0.0f),
          gw(w.size(), 0.0f), gb(b.size(), 0.0f), vw(w.size(), 0.0f), vb(b.size(), 0.0f) {
        std::mt19937 rng(seed);
        std::normal_distribution<float> normal(0.0f, std::sqrt((relu ? 2.0f : 1.0f) / static_cast<float>(in)));
        for (auto& v : w) v = normal(rng);
    }
    const std::vector<float>& forward(const std::vector<float>& input, int n) {
        x = input;
        y.assign(static_cast<std::size_t>(n) * out, 0.0f);
        for (int i = 0; i < n; ++i)
            for (int o = 0; o < out; ++o) {
                float a = b[static_cast<std::size_t>(o)];
                for (int j = 0; j < in; ++j) a += x[static_cast<std::size_t>(i) * in + j] * w[static_cast<std::size_t>(j) * out + o];
                y[static_cast<std::size_t>(i) * out + o] = relu && a < 0.0f ? 0.0f : a;
            }
        return y;
    }
    std::vector<float> backward(const std::vector<float>& grad_y, int n) {
        std::vector<float> grad_x(static_cast<std::size_t>(n) * in, 0.0f);
        for (int i = 0; i < n; ++i)
            for (int o = 0; o < out; ++o) {
                const std::size_t io = static_cast<std::size_t>(i) * out + o;
                const float g = relu && y[io] <= 0.0f ? 0.0f : grad_y[io];
                gb[static_cast<std::size_t>(o)] += g;
                for (int j = 0; j < in; ++j) {
                    gw[static_cast<std::size_t>(j) * out + o] += x[static_cast<std::size_t>(i) * in + j] * g;
                    grad_x[static_cast<std::size_t>(i) * in + j] += w[static_cast<std::size_t>(j) * out + o] * g;
                }
            }
        return grad_x;
    }
    void step(float learning_rate) {
        for (std::size_t k = 0; k < w.size(); ++k) vw[k] = 0.9f * vw[k] + gw[k], w[k] -= learning_rate * vw[k], gw[k] = 0.0f;
        for (std::size_t k = 0; k < b.size(); ++k) vb[k] = 0.9f * vb[k] + gb[k], b[k] -= learning_rate * vb[k], gb[k] = 0.0f;
    }
};

/// Three blocks, each followed by an exit: bottleneck (ReLU, the exit's feature) and classifier.
struct multi_exit_net {
    std::vector<dense> blocks, necks, heads;
    std::vector<std::vector<float>> logits, feats;  ///< of the last forward, per exit

    multi_exit_net() {
        for (int k = 0; k < exits; ++k) {
            blocks.emplace_back(k == 0 ? features : width, width, true, 10 + k);
            necks.emplace_back(width, bottleneck, true, 20 + k);
            heads.emplace_back(bottleneck, classes, false, 30 + k);
        }
    }
    void forward(const float* x, int n) {
        std::vector<float> a(x, x + static_cast<std::size_t>(n) * features);
        logits.assign(exits, {}), feats.assign(exits, {});
        for (int k = 0; k < exits; ++k) {
            a = blocks[k].forward(a, n);
            feats[k] = necks[k].forward(a, n);
            logits[k] = heads[k].forward(feats[k], n);
        }
    }
    /// Backpropagates every exit's d loss / d logits and d loss / d features, deepest block first.
    void backward(const std::vector<std::vector<float>>& grad_logits, const std::vector<std::vector<float>>& grad_feats, int n) {
        std::vector<float> grad_a(static_cast<std::size_t>(n) * width, 0.0f);
        for (int k = exits - 1; k >= 0; --k) {
            std::vector<float> g = heads[k].backward(grad_logits[k], n);
            for (std::size_t j = 0; j < g.size(); ++j) g[j] += grad_feats[k][j];
            const std::vector<float> from_exit = necks[k].backward(g, n);
            for (std::size_t j = 0; j < grad_a.size(); ++j) grad_a[j] += from_exit[j];
            grad_a = blocks[k].backward(grad_a, n);
        }
    }
    void step(float learning_rate) {
        for (auto* layers : {&blocks, &necks, &heads})
            for (auto& l : *layers) l.step(learning_rate);
    }
};

/// Trains the network for `epochs`: with BYOT when `byot`, else every exit on cross-entropy alone.
void train(multi_exit_net& net, const toy::dataset& data, int epochs, bool byot) {
    const distill::self_distillation_float_options opts{};  // T = 3, alpha = 0.1, feature_weight = 0.05
    std::vector<std::vector<float>> grad_logits(exits, std::vector<float>(batch * classes)),
        grad_feats(exits, std::vector<float>(batch * bottleneck));
    std::vector<distill::any_view<float>> grad_logit_views, grad_feat_views;
    for (int k = 0; k < exits; ++k) {
        grad_logit_views.push_back(distill::make_view(grad_logits[k].data(), batch, classes));
        grad_feat_views.push_back(distill::make_view(grad_feats[k].data(), batch, bottleneck));
    }
    float loss = 0;
    std::vector<std::byte> scratch;
    for (int epoch = 0; epoch < epochs; ++epoch)
        for (int start = 0; start + batch <= data.rows; start += batch) {
            net.forward(data.x.data() + static_cast<std::size_t>(start) * features, batch);
            std::vector<distill::any_view<const float>> z, f;
            for (int k = 0; k < exits; ++k) {
                z.push_back(distill::make_view(net.logits[k].data(), batch, classes));
                f.push_back(distill::make_view(net.feats[k].data(), batch, bottleneck));
            }
            const auto labels = distill::make_view(data.y.data() + start, batch);
            if (!byot) {  // the baseline: sum over exits of ce, each exit's gradient into its own buffer
                distill::objective<float> objective(epoch);
                for (int k = 0; k < exits; ++k) {
                    objective.add(1.0, distill::ce_float_options{}, distill::response_args<float>{z[k], {}, labels},
                                  distill::response_outputs<float>{{}, grad_logit_views[k]});
                    std::fill(grad_feats[k].begin(), grad_feats[k].end(), 0.0f);
                }
                if (!objective.ok()) {
                    std::fprintf(stderr, "objective: %s\n", objective.status().message());
                    std::exit(2);
                }
                net.backward(grad_logits, grad_feats, batch);
                net.step(0.02f);
                continue;
            }
            const distill::self_distillation_args<float> args{z, labels, f};
            distill::self_distillation_outputs<float> outs{distill::make_view(&loss, 1)};
            outs.grad_logits = grad_logit_views;
            outs.grad_features = grad_feat_views;
            scratch.resize(distill::workspace_bytes(opts, args, outs));  // the hint's row weights: N floats
            if (const distill::status s = distill::run(opts, args, outs, distill::workspace{scratch.data(), scratch.size()}); !s) {
                std::fprintf(stderr, "self_distillation: %s\n", s.message());
                std::exit(2);
            }
            net.backward(grad_logits, grad_feats, batch);
            net.step(0.02f);
        }
}

/// Mean over test rows of KL(p_deepest || p_k) for a shallow exit k, at temperature 1.
double kl_to_deepest(const multi_exit_net& net, int k, int rows) {
    const auto softmax = [](const float* z, std::vector<double>& p) {
        const double mx = *std::max_element(z, z + classes);
        double sum = 0;
        for (int c = 0; c < classes; ++c) sum += (p[static_cast<std::size_t>(c)] = std::exp(z[c] - mx));
        for (auto& v : p) v /= sum;
    };
    std::vector<double> p(classes), q(classes);
    double kl = 0;
    for (int i = 0; i < rows; ++i) {
        softmax(net.logits[exits - 1].data() + static_cast<std::size_t>(i) * classes, p);
        softmax(net.logits[static_cast<std::size_t>(k)].data() + static_cast<std::size_t>(i) * classes, q);
        for (int c = 0; c < classes; ++c) kl += p[static_cast<std::size_t>(c)] * std::log((p[static_cast<std::size_t>(c)] + 1e-12) / (q[static_cast<std::size_t>(c)] + 1e-12));
    }
    return kl / rows;
}

}  // namespace

int main(int argc, char** argv) {
    const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
    const int epochs = quick ? 15 : 60;
    const toy::dataset train_set = toy::dataset::clusters(1024, features, classes, 2.0f, 7);
    const toy::dataset test_set = toy::dataset::clusters(4000, features, classes, 2.0f, 8);

    const distill::self_distillation_float_options byot{};
    multi_exit_net plain, self;  // the same initial weights
    train(plain, train_set, epochs, false);
    train(self, train_set, epochs, true);

    bool ok = true;
    std::printf("%d exits, %d epochs, %d training rows, %d classes; BYOT: T = %.0f, alpha = %.2f, feature_weight = %.2f\n\n",
                exits, epochs, train_set.rows, classes, static_cast<double>(byot.temperature), static_cast<double>(byot.alpha),
                static_cast<double>(byot.feature_weight));
    std::printf("%-14s %9s %9s %9s %24s\n", "training", "exit 1", "exit 2", "exit 3", "KL(deepest || exit 1, 2)");
    double kl[2] = {0, 0};
    for (int run = 0; run < 2; ++run) {
        multi_exit_net& net = run == 0 ? plain : self;
        net.forward(test_set.x.data(), test_set.rows);
        std::printf("%-14s", run == 0 ? "cross-entropy" : "BYOT");
        for (int k = 0; k < exits; ++k) {
            const double acc = toy::accuracy(net.logits[static_cast<std::size_t>(k)], test_set.y, classes);
            std::printf(" %8.2f%%", 100 * acc);
            ok = ok && acc > 2.0 / classes;
        }
        const double kl1 = kl_to_deepest(net, 0, test_set.rows), kl2 = kl_to_deepest(net, 1, test_set.rows);
        kl[run] = kl1 + kl2;
        std::printf(" %11.4f %11.4f\n", kl1, kl2);
    }
    ok = ok && kl[1] < kl[0];
    std::printf("\nsanity: every exit beats chance by 2x, BYOT's shallow exits are closer to the deepest: %s\n",
                ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
