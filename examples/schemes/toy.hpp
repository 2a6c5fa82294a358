// examples/schemes/toy.hpp: the small models the scheme examples train, with no dependency
// beyond the standard library, so that each example is about its scheme and builds in seconds.
//
//   toy::dataset      Gaussian clusters in `features` dimensions, `classes` classes, a fixed seed;
//                     hard enough that a linear model does not reach 100 %.
//   toy::mlp          features -> hidden (ReLU) -> classes, row-major float weights, SGD with
//                     momentum. forward() returns logits (N x classes, row-major) and keeps what
//                     backward() needs; backward(grad_logits) accumulates the weight gradients
//                     (and returns d loss / d input); step() applies and clears them.
//   toy::accuracy     share of rows whose arg-max logit is the label.
//
// The losses themselves come from distill; these models only turn a gradient with respect to
// logits (or to the hidden features, for feature terms) into a parameter update.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace toy {

struct dataset {
    int features = 0, classes = 0, rows = 0;
    std::vector<float> x;             ///< rows x features, row-major
    std::vector<std::int64_t> y;      ///< rows labels in [0, classes)

    /// `rows` points: class k's centre is a random unit-scale vector, points spread by `noise`.
    static dataset clusters(int rows, int features, int classes, float noise, unsigned seed) {
        dataset d;
        d.features = features, d.classes = classes, d.rows = rows;
        std::mt19937 rng(seed);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        std::vector<float> centres(static_cast<std::size_t>(classes) * features);
        std::mt19937 centre_rng(1234);  // same centres for every split of one problem
        for (auto& c : centres) c = normal(centre_rng);
        d.x.resize(static_cast<std::size_t>(rows) * features);
        d.y.resize(static_cast<std::size_t>(rows));
        for (int i = 0; i < rows; ++i) {
            const int k = static_cast<int>(rng() % static_cast<unsigned>(classes));
            d.y[static_cast<std::size_t>(i)] = k;
            for (int f = 0; f < features; ++f)
                d.x[static_cast<std::size_t>(i) * features + f] =
                    centres[static_cast<std::size_t>(k) * features + f] + noise * normal(rng);
        }
        return d;
    }
};

/// A one-hidden-layer perceptron (hidden = 0: a linear model).
struct mlp {
    int in = 0, hidden = 0, out = 0;
    std::vector<float> w1, b1, w2, b2;          ///< in x hidden, hidden, hidden x out, out (row-major)
    std::vector<float> g1, gb1, g2, gb2;        ///< accumulated gradients
    std::vector<float> v1, vb1, v2, vb2;        ///< momentum
    std::vector<float> input, hidden_act;       ///< kept by forward for backward
    int batch = 0;

    mlp(int in_, int hidden_, int out_, unsigned seed) : in(in_), hidden(hidden_), out(out_) {
        const int h = hidden > 0 ? hidden : in;
        std::mt19937 rng(seed);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        if (hidden > 0) {
            w1.resize(static_cast<std::size_t>(in) * hidden);
            for (auto& w : w1) w = normal(rng) * std::sqrt(2.0f / static_cast<float>(in));
            b1.assign(static_cast<std::size_t>(hidden), 0.0f);
        }
        w2.resize(static_cast<std::size_t>(h) * out);
        for (auto& w : w2) w = normal(rng) * std::sqrt(1.0f / static_cast<float>(h));
        b2.assign(static_cast<std::size_t>(out), 0.0f);
        g1 = v1 = std::vector<float>(w1.size(), 0.0f);
        gb1 = vb1 = std::vector<float>(b1.size(), 0.0f);
        g2 = v2 = std::vector<float>(w2.size(), 0.0f);
        gb2 = vb2 = std::vector<float>(b2.size(), 0.0f);
    }

    int width() const { return hidden > 0 ? hidden : in; }

    /// Logits of `n` rows of x (row-major, n x in). The hidden activations stay in hidden_act.
    std::vector<float> forward(const float* x, int n) {
        batch = n;
        input.assign(x, x + static_cast<std::size_t>(n) * in);
        const int h = width();
        if (hidden > 0) {
            hidden_act.assign(static_cast<std::size_t>(n) * hidden, 0.0f);
            for (int i = 0; i < n; ++i)
                for (int j = 0; j < hidden; ++j) {
                    float a = b1[static_cast<std::size_t>(j)];
                    for (int f = 0; f < in; ++f) a += x[static_cast<std::size_t>(i) * in + f] * w1[static_cast<std::size_t>(f) * hidden + j];
                    hidden_act[static_cast<std::size_t>(i) * hidden + j] = a > 0.0f ? a : 0.0f;
                }
        } else {
            hidden_act = input;
        }
        std::vector<float> logits(static_cast<std::size_t>(n) * out);
        for (int i = 0; i < n; ++i)
            for (int k = 0; k < out; ++k) {
                float a = b2[static_cast<std::size_t>(k)];
                for (int j = 0; j < h; ++j) a += hidden_act[static_cast<std::size_t>(i) * h + j] * w2[static_cast<std::size_t>(j) * out + k];
                logits[static_cast<std::size_t>(i) * out + k] = a;
            }
        return logits;
    }

    /// Accumulates the weight gradients of the last forward() for d loss / d logits (n x out) and,
    /// optionally, an extra d loss / d hidden (n x width(), from a feature term). Returns nothing:
    /// the inputs are data, not trained.
    void backward(const float* grad_logits, const float* grad_hidden = nullptr) {
        const int n = batch, h = width();
        std::vector<float> dh(static_cast<std::size_t>(n) * h, 0.0f);
        for (int i = 0; i < n; ++i)
            for (int k = 0; k < out; ++k) {
                const float g = grad_logits[static_cast<std::size_t>(i) * out + k];
                gb2[static_cast<std::size_t>(k)] += g;
                for (int j = 0; j < h; ++j) {
                    g2[static_cast<std::size_t>(j) * out + k] += hidden_act[static_cast<std::size_t>(i) * h + j] * g;
                    dh[static_cast<std::size_t>(i) * h + j] += w2[static_cast<std::size_t>(j) * out + k] * g;
                }
            }
        if (hidden == 0) return;
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < hidden; ++j) {
                const std::size_t ij = static_cast<std::size_t>(i) * hidden + j;
                float g = dh[ij] + (grad_hidden ? grad_hidden[ij] : 0.0f);
                if (hidden_act[ij] <= 0.0f) g = 0.0f;
                gb1[static_cast<std::size_t>(j)] += g;
                for (int f = 0; f < in; ++f) g1[static_cast<std::size_t>(f) * hidden + j] += input[static_cast<std::size_t>(i) * in + f] * g;
            }
    }

    /// SGD with momentum 0.9 on the accumulated gradients, which are then cleared.
    void step(float learning_rate) {
        const auto apply = [learning_rate](std::vector<float>& w, std::vector<float>& g, std::vector<float>& v) {
            for (std::size_t k = 0; k < w.size(); ++k) {
                v[k] = 0.9f * v[k] + g[k];
                w[k] -= learning_rate * v[k];
                g[k] = 0.0f;
            }
        };
        apply(w1, g1, v1), apply(b1, gb1, vb1), apply(w2, g2, v2), apply(b2, gb2, vb2);
    }
};

/// Share of rows whose largest logit is at the label.
inline double accuracy(const std::vector<float>& logits, const std::vector<std::int64_t>& labels, int classes) {
    int right = 0;
    const int n = static_cast<int>(labels.size());
    for (int i = 0; i < n; ++i) {
        const float* row = logits.data() + static_cast<std::size_t>(i) * classes;
        const int best = static_cast<int>(std::max_element(row, row + classes) - row);
        right += best == labels[static_cast<std::size_t>(i)];
    }
    return n > 0 ? static_cast<double>(right) / n : 0.0;
}

}  // namespace toy
