// fashion_mnist/mlp.hpp: the networks of the demo, written directly with Eigen.
//
// Fully connected layers with ReLU (and inverted dropout for the teacher), Adam with a cosine
// learning-rate decay, and a small deterministic random generator so that a seed gives the same
// numbers on every platform (std::shuffle and std::*_distribution are implementation-defined).
// Every matrix is row-major with one sample per row: a batch of N images is N x 784.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <numbers>
#include <string>
#include <vector>

#include "idx.hpp"

namespace fmnist {

using row_vector = Eigen::RowVectorXf;
using label_vector = Eigen::VectorXi;

// ------------------------------------------------------------------ random numbers

/// xoshiro256** seeded through splitmix64: fast, and the same stream everywhere.
class rng {
public:
    explicit rng(std::uint64_t seed) {
        for (auto& word : state_) {
            seed += 0x9e3779b97f4a7c15ull;
            std::uint64_t z = seed;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
            word = z ^ (z >> 31);
        }
    }
    std::uint64_t next() {
        const std::uint64_t result = rotl(state_[1] * 5, 7) * 9, t = state_[1] << 17;
        state_[2] ^= state_[0];
        state_[3] ^= state_[1];
        state_[1] ^= state_[2];
        state_[0] ^= state_[3];
        state_[2] ^= t;
        state_[3] = rotl(state_[3], 45);
        return result;
    }
    /// Uniform in [0, 1).
    float uniform() { return float(next() >> 40) * 0x1.0p-24f; }
    /// Uniform integer in [0, n) (n small: the modulo bias is negligible here).
    std::size_t below(std::size_t n) { return std::size_t(next() % n); }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    std::uint64_t state_[4];
};

/// Fisher-Yates shuffle with our generator.
inline void shuffle(std::vector<int>& v, rng& g) {
    for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[g.below(i)]);
}

// ------------------------------------------------------------------ layers

/// y = x w + b, with w: in x out. Gradients are stored next to the parameters.
struct linear {
    matrix w, gw;
    row_vector b, gb;

    linear() = default;
    /// PyTorch's nn.Linear initialisation: w and b uniform in +-1/sqrt(in).
    linear(Eigen::Index in, Eigen::Index out, rng& g) : w(in, out), gw(in, out), b(out), gb(out) {
        const float bound = 1.0f / std::sqrt(float(in));
        for (Eigen::Index i = 0; i < w.size(); ++i) w.data()[i] = (2 * g.uniform() - 1) * bound;
        for (Eigen::Index i = 0; i < b.size(); ++i) b[i] = (2 * g.uniform() - 1) * bound;
        gw.setZero();
        gb.setZero();
    }
    void forward(const matrix& x, matrix& y) const {
        y.noalias() = x * w;
        y.rowwise() += b;
    }
    /// Writes d/dw and d/db into (dw, db) and, when asked, d/dx.
    void backward(const matrix& x, const matrix& dy, matrix& dw, row_vector& db, matrix* dx) const {
        dw.noalias() = x.transpose() * dy;
        db = dy.colwise().sum();
        if (dx != nullptr) dx->noalias() = dy * w.transpose();
    }
    /// The same into the layer's own gradients.
    void backward(const matrix& x, const matrix& dy, matrix* dx) { backward(x, dy, gw, gb, dx); }
};

inline void relu_inplace(matrix& z) { z = z.cwiseMax(0.0f); }

/// dz = dh where the ReLU's input was positive (h = relu(z) > 0 is the same test).
inline void relu_backward(const matrix& h, matrix& dh) { dh = (h.array() > 0.0f).select(dh, 0.0f); }

/// Inverted dropout: zeroes each entry with probability p and scales the rest by 1/(1-p);
/// the mask is kept (as 0 or 1/(1-p)) for the backward pass.
inline void dropout(matrix& h, matrix& mask, float p, rng& g) {
    mask.resize(h.rows(), h.cols());
    const float keep_scale = 1.0f / (1.0f - p);
    const std::uint32_t threshold = std::uint32_t(p * 65536.0f);
    float* m = mask.data();
    const Eigen::Index n = h.size();
    for (Eigen::Index i = 0; i < n; i += 4) {  // four 16-bit draws per 64-bit number
        std::uint64_t bits = g.next();
        for (Eigen::Index k = i; k < std::min(n, i + 4); ++k, bits >>= 16)
            m[k] = (bits & 0xffff) < threshold ? 0.0f : keep_scale;
    }
    h.array() *= mask.array();
}

// ------------------------------------------------------------------ optimiser

/// Adam (Kingma & Ba 2015) over a list of parameter tensors; the learning rate is set per step.
class adam {
public:
    struct slot {
        float* param;
        const float* grad;
        Eigen::Index size;
        std::vector<float> m, v;
    };
    void add(matrix& p, const matrix& g) { slots_.push_back({p.data(), g.data(), p.size(), {}, {}}); }
    void add(row_vector& p, const row_vector& g) { slots_.push_back({p.data(), g.data(), p.size(), {}, {}}); }
    void add(linear& layer) {
        add(layer.w, layer.gw);
        add(layer.b, layer.gb);
    }
    void step(float lr, float beta1 = 0.9f, float beta2 = 0.999f, float eps = 1e-8f) {
        ++t_;
        const float c1 = 1.0f - std::pow(beta1, float(t_)), c2 = 1.0f - std::pow(beta2, float(t_));
        const float step_size = lr / c1, inv_c2 = 1.0f / c2;
        for (auto& s : slots_) {
            if (s.m.empty()) s.m.assign(std::size_t(s.size), 0.0f), s.v.assign(std::size_t(s.size), 0.0f);
            Eigen::Map<Eigen::ArrayXf> p(s.param, s.size), m(s.m.data(), s.size), v(s.v.data(), s.size);
            Eigen::Map<const Eigen::ArrayXf> g(s.grad, s.size);
            m = beta1 * m + (1 - beta1) * g;
            v = beta2 * v + (1 - beta2) * g.square();
            p -= step_size * m / ((v * inv_c2).sqrt() + eps);
        }
    }

private:
    std::vector<slot> slots_;
    long t_ = 0;
};

/// Cosine decay from lr to 0 over `total` steps (Loshchilov & Hutter 2017, without restarts).
inline float cosine_lr(float lr, long step, long total) {
    return 0.5f * lr * (1.0f + std::cos(std::numbers::pi_v<float> * float(step) / float(total)));
}

// ------------------------------------------------------------------ batches and evaluation

/// The rows `index[begin, begin + n)` of `source`, gathered into `out`.
inline void gather_rows(const matrix& source, const std::vector<int>& index, std::size_t begin, std::size_t n, matrix& out) {
    out.resize(Eigen::Index(n), source.cols());
    for (std::size_t i = 0; i < n; ++i) out.row(Eigen::Index(i)) = source.row(index[begin + i]);
}

/// Fraction of rows whose largest logit is the label.
inline double accuracy(const matrix& logits, const labels_t& labels) {
    long correct = 0;
    for (Eigen::Index i = 0; i < logits.rows(); ++i) {
        Eigen::Index best;
        logits.row(i).maxCoeff(&best);
        correct += best == labels[std::size_t(i)];
    }
    return double(correct) / double(logits.rows());
}

// ------------------------------------------------------------------ the two networks

/// The teacher: 784 - h - h - 10 with ReLU and dropout after each hidden layer (Hinton et al.
/// 2015 use such a net, 784-1200-1200-10, as their MNIST teacher).
struct teacher_net {
    linear l1, l2, l3;
    float dropout_p = 0.3f;

    teacher_net() = default;
    teacher_net(Eigen::Index hidden, float p, rng& g) : l1(784, hidden, g), l2(hidden, hidden, g), l3(hidden, 10, g), dropout_p(p) {}

    /// Evaluation mode (no dropout): the logits and, when asked, the last hidden layer (the
    /// features that the feature and relation methods match) of every row of x. Chunks of 512
    /// rows, spread over the OpenMP threads.
    void infer(const matrix& x, matrix& logits, matrix* features) const {
        logits.resize(x.rows(), 10);
        if (features) features->resize(x.rows(), l2.w.cols());
        const Eigen::Index chunks = (x.rows() + 511) / 512;
#pragma omp parallel for schedule(dynamic, 1)
        for (Eigen::Index k = 0; k < chunks; ++k) {
            const Eigen::Index begin = 512 * k, n = std::min<Eigen::Index>(512, x.rows() - begin);
            matrix h1, h2, z;
            l1.forward(x.middleRows(begin, n), h1);
            relu_inplace(h1);
            l2.forward(h1, h2);
            relu_inplace(h2);
            l3.forward(h2, z);
            logits.middleRows(begin, n) = z;
            if (features) features->middleRows(begin, n) = h2;
        }
    }

    /// One shard of a training batch: its buffers and its share of the gradients.
    struct shard {
        matrix x, h1, h2, z, mask1, mask2, gz, gh1, gh2;
        label_vector y;
        matrix gw1, gw2, gw3;
        row_vector gb1, gb2, gb3;
        float loss = 0;
    };

    /// Forward with dropout after each hidden ReLU, then backward, on the shard's rows; the
    /// shard's gradients are `weight` (its share of the batch) times those of its mean loss.
    /// `ce(logits, labels, weight, grad)` is the loss (distill::ce).
    template <class CrossEntropy>
    void train_shard(shard& s, float weight, rng& g, CrossEntropy&& ce) const {
        l1.forward(s.x, s.h1);
        relu_inplace(s.h1);
        dropout(s.h1, s.mask1, dropout_p, g);
        l2.forward(s.h1, s.h2);
        relu_inplace(s.h2);
        dropout(s.h2, s.mask2, dropout_p, g);
        l3.forward(s.h2, s.z);
        s.gz.setZero(s.z.rows(), s.z.cols());
        s.loss = ce(s.z, s.y, weight, s.gz);
        // Backward: the dropout masks, then the ReLUs (h > 0 after dropout marks the kept, active
        // units; the dropped ones already have a zero gradient).
        l3.backward(s.h2, s.gz, s.gw3, s.gb3, &s.gh2);
        s.gh2.array() *= s.mask2.array();
        relu_backward(s.h2, s.gh2);
        l2.backward(s.h1, s.gh2, s.gw2, s.gb2, &s.gh1);
        s.gh1.array() *= s.mask1.array();
        relu_backward(s.h1, s.gh1);
        l1.backward(s.x, s.gh1, s.gw1, s.gb1, nullptr);
    }
};

/// The student: 784 - h - 10 with one ReLU hidden layer (its activations are the features the
/// feature and relation methods use).
struct student_net {
    linear l1, l2;

    student_net() = default;
    student_net(Eigen::Index hidden, rng& g) : l1(784, hidden, g), l2(hidden, 10, g) {}

    void forward(const matrix& x, matrix& hidden, matrix& logits) const {
        l1.forward(x, hidden);
        relu_inplace(hidden);
        l2.forward(hidden, logits);
    }
    /// Back-propagates d loss / d logits and the features' own d loss / d hidden (may be empty).
    void backward(const matrix& x, const matrix& hidden, const matrix& grad_logits, const matrix& grad_hidden,
                  matrix& scratch) {
        l2.backward(hidden, grad_logits, &scratch);
        if (grad_hidden.size() != 0) scratch += grad_hidden;
        relu_backward(hidden, scratch);
        l1.backward(x, scratch, nullptr);
    }
};

// ------------------------------------------------------------------ teacher cache

namespace detail {
inline void write_matrix(std::ofstream& out, const float* data, Eigen::Index rows, Eigen::Index cols) {
    const std::int64_t shape[2] = {rows, cols};
    out.write(reinterpret_cast<const char*>(shape), sizeof shape);
    out.write(reinterpret_cast<const char*>(data), std::streamsize(sizeof(float) * std::size_t(rows * cols)));
}
inline bool read_matrix(std::ifstream& in, float* data, Eigen::Index rows, Eigen::Index cols) {
    std::int64_t shape[2] = {};
    in.read(reinterpret_cast<char*>(shape), sizeof shape);
    if (!in || shape[0] != rows || shape[1] != cols) return false;
    in.read(reinterpret_cast<char*>(data), std::streamsize(sizeof(float) * std::size_t(rows * cols)));
    return bool(in);
}
inline constexpr char cache_magic[8] = {'D', 'S', 'T', 'L', 'T', 'C', 'H', '1'};
}  // namespace detail

/// What the cache stores besides the weights.
struct teacher_record {
    double test_accuracy = 0;
    double train_seconds = 0;
};

inline void save_teacher(const std::string& path, const teacher_net& t, const teacher_record& record) {
    std::ofstream out(path, std::ios::binary);
    out.write(detail::cache_magic, sizeof detail::cache_magic);
    out.write(reinterpret_cast<const char*>(&record), sizeof record);
    for (const linear* l : {&t.l1, &t.l2, &t.l3}) {
        detail::write_matrix(out, l->w.data(), l->w.rows(), l->w.cols());
        detail::write_matrix(out, l->b.data(), 1, l->b.size());
    }
    if (!out) throw std::runtime_error("cannot write the teacher cache " + path);
}

/// Loads weights into `t` (already shaped); false when the file is absent or does not match.
inline bool load_teacher(const std::string& path, teacher_net& t, teacher_record& record) {
    std::ifstream in(path, std::ios::binary);
    char magic[8] = {};
    in.read(magic, sizeof magic);
    if (!in || !std::equal(magic, magic + 8, detail::cache_magic)) return false;
    in.read(reinterpret_cast<char*>(&record), sizeof record);
    for (linear* l : {&t.l1, &t.l2, &t.l3})
        if (!detail::read_matrix(in, l->w.data(), l->w.rows(), l->w.cols()) ||
            !detail::read_matrix(in, l->b.data(), 1, l->b.size()))
            return false;
    return true;
}

}  // namespace fmnist
