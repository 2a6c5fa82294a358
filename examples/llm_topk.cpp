// Distilling a language model from a sparse top-k teacher.
//
// An LLM teacher's distribution over a vocabulary of 32k+ tokens costs 128 KiB per token in
// float, too much to store for a training corpus, so distillation pipelines keep only the
// teacher's top-k token ids and their log-probabilities (k = 64 here: 512 bytes per token).
// This example
//   1. makes teacher and student logits for 8 token positions over a 32768-token vocabulary,
//   2. builds the teacher's top-64 targets from its logits (log_softmax, then std::nth_element
//      and a sort of the 64 survivors per row),
//   3. computes distill::kd_topk, plain (verl: stored log-probabilities, T = 1) and
//      renormalized (DistillKit: top-k renormalised, at T = 1 and T = 2), and, with the full teacher
//      logits, distill::jsd (GKD's generalized Jensen-Shannon, beta = 0.5) and distill::kd,
//   4. prints losses, d loss / d T, a few gradient entries and the memory per token.
// It checks what must hold (finite values, gradient rows summing to 0, KL >= 0) and exits 0.
#include <distill/distill.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

namespace {

constexpr distill::index_t tokens = 8;        // N: token positions in the batch
constexpr distill::index_t vocabulary = 32768;  // V
constexpr distill::index_t top_k = 64;        // k

/// Teacher and student logits: the student is a noisy, flatter copy of the teacher.
void make_logits(std::vector<float>& teacher, std::vector<float>& student) {
    std::mt19937 gen(2024);
    std::normal_distribution<float> logit(0.0f, 2.5f), noise(0.0f, 1.0f);
    teacher.resize(static_cast<std::size_t>(tokens * vocabulary));
    student.resize(teacher.size());
    for (std::size_t i = 0; i < teacher.size(); ++i) {
        teacher[i] = logit(gen);
        student[i] = 0.8f * teacher[i] + noise(gen);
    }
}

/// The teacher's top-k ids (int32: any integer type works) and full-vocabulary log-probabilities.
void top_k_targets(const std::vector<float>& teacher, std::vector<std::int32_t>& ids, std::vector<float>& logprob) {
    std::vector<std::int32_t> order(static_cast<std::size_t>(vocabulary));
    for (distill::index_t i = 0; i < tokens; ++i) {
        const float* row = teacher.data() + i * vocabulary;
        // log_softmax over the whole vocabulary (double for the sum of 32k exponentials).
        const float max = *std::max_element(row, row + vocabulary);
        double sum = 0;
        for (distill::index_t c = 0; c < vocabulary; ++c) sum += std::exp(static_cast<double>(row[c] - max));
        const double log_normaliser = static_cast<double>(max) + std::log(sum);
        // The k largest logits: O(V) selection, then the k survivors in descending order.
        std::iota(order.begin(), order.end(), 0);
        auto larger = [row](std::int32_t a, std::int32_t b) { return row[a] > row[b]; };
        std::nth_element(order.begin(), order.begin() + top_k, order.end(), larger);
        std::sort(order.begin(), order.begin() + top_k, larger);
        for (distill::index_t j = 0; j < top_k; ++j) {
            const std::int32_t id = order[static_cast<std::size_t>(j)];
            ids.push_back(id);
            logprob.push_back(static_cast<float>(static_cast<double>(row[id]) - log_normaliser));
        }
    }
}

/// Largest |sum of a gradient row|: every method here has rows summing to 0 (softmax Jacobian).
template <class Result>
double largest_row_sum(const Result& r) {
    double worst = 0;
    for (distill::index_t i = 0; i < tokens; ++i) {
        double sum = 0;
        for (distill::index_t c = 0; c < vocabulary; ++c) sum += r.grad_student.data()[i * vocabulary + c];
        worst = std::max(worst, std::abs(sum));
    }
    return worst;
}

template <class Result>
bool all_finite(const Result& r) {
    const float* g = r.grad_student.data();
    return std::isfinite(r.loss) && std::isfinite(r.grad_temperature) &&
           std::all_of(g, g + r.grad_student.size(), [](float x) { return std::isfinite(x); });
}

template <class Result>
void print(const char* name, const Result& r, const std::vector<std::int32_t>& ids) {
    const float* g = r.grad_student.data();
    const std::int32_t best = ids[0];  // token 0's most likely token under the teacher
    std::printf("%-28s loss = %9.6f   d loss / d T = % .6f   grad[0][%5d] = % .3e   max |row sum| = %.1e\n", name,
                static_cast<double>(r.loss), static_cast<double>(r.grad_temperature), best,
                static_cast<double>(g[best]), largest_row_sum(r));
}

}  // namespace

int main() {
    std::vector<float> teacher, student, logprob;
    std::vector<std::int32_t> ids;
    make_logits(teacher, student);
    top_k_targets(teacher, ids, logprob);

    const auto student_view = distill::make_view(student.data(), tokens, vocabulary);
    const auto teacher_view = distill::make_view(teacher.data(), tokens, vocabulary);
    const auto ids_view = distill::make_view(ids.data(), tokens, top_k);
    const auto logprob_view = distill::make_view(logprob.data(), tokens, top_k);

    double kept_mass = 0;  // how much of the teacher's distribution the top 64 hold, on average
    for (float l : logprob) kept_mass += std::exp(static_cast<double>(l));
    kept_mass /= static_cast<double>(tokens);
    std::printf("batch: %lld tokens x %lld vocabulary, teacher top-%lld holds %.1f%% of its probability on average\n\n",
                static_cast<long long>(tokens), static_cast<long long>(vocabulary), static_cast<long long>(top_k),
                100.0 * kept_mass);

    // Sparse teacher: the stored top-k log-probabilities (verl's plain forward KL, T = 1) ...
    const auto plain = distill::kd_topk(student_view, ids_view, logprob_view);
    // ... and renormalised over the k ids after tempering (DistillKit's sparse KL), at T = 1 and 2.
    // The renormalised target puts all its mass on 64 of 32768 tokens while the student spreads
    // over the whole vocabulary: a larger loss than the plain one, which drops the missing mass.
    const auto renormalized = distill::kd_topk(student_view, ids_view, logprob_view, {.renormalize = true});
    const auto renormalized_t2 =
        distill::kd_topk(student_view, ids_view, logprob_view, {.temperature = 2, .renormalize = true});
    // Dense teacher, for comparison: GKD's generalized JSD (beta = 0.5) and Hinton's KD.
    const auto jsd = distill::jsd(student_view, teacher_view);
    const auto kd = distill::kd(student_view, teacher_view);

    print("kd_topk (plain, T = 1)", plain, ids);
    print("kd_topk (renormalize, T = 1)", renormalized, ids);
    print("kd_topk (renormalize, T = 2)", renormalized_t2, ids);
    print("jsd (dense, beta = 0.5)", jsd, ids);
    print("kd (dense, T = 1)", kd, ids);

    const double dense_bytes = static_cast<double>(vocabulary * sizeof(float));
    const double sparse_bytes = static_cast<double>(top_k * (sizeof(std::int32_t) + sizeof(float)));
    std::printf("\nmemory per token:\n");
    std::printf("  teacher target, dense logits         %8.0f bytes\n", dense_bytes);
    std::printf("  teacher target, top-%lld ids + logprob  %8.0f bytes (%.0fx smaller)\n", static_cast<long long>(top_k),
                sparse_bytes, dense_bytes / sparse_bytes);
    std::printf("  kd_topk temporaries                  %8zu bytes (streams the student row; no N x V scratch)\n",
                distill::workspace_bytes(distill::kd_topk_float_options{},
                                         distill::make_topk_args(student_view, ids_view, logprob_view),
                                         distill::response_outputs<float>{}));
    std::printf("  gradient output                      %8.0f bytes (one row of d loss / d student)\n", dense_bytes);

    // What must hold: finite results, gradient rows summing to 0, and a renormalised KL >= 0.
    bool ok = renormalized.loss >= 0.0f && renormalized_t2.loss >= 0.0f && jsd.loss >= 0.0f &&
              jsd.loss <= std::log(2.0f) + 1e-6f;
    for (const auto* r : {&plain, &renormalized, &renormalized_t2, &jsd, &kd})
        ok = ok && all_finite(*r) && largest_row_sum(*r) < 1e-5;
    std::printf("\n%s\n", ok ? "all checks passed" : "CHECK FAILED");
    return ok ? 0 : 1;
}
